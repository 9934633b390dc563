// Command photos writes the benchmark images to a folder, for tools that
// take files (the load generator, the Node peer): rembg's car-1.jpg as it
// is, and internal/testfiles' derived photos at 0.3, 1.5 and 12 MP as JPEG
// and PNG.
//
//	go run ./bench/photos -out /tmp/photos
package main

import (
	"flag"
	"fmt"
	"image"
	"os"
	"path/filepath"

	"github.com/imgserve/imgserve/internal/testfiles"
)

func main() {
	out := flag.String("out", "", "folder to write the images into (created if missing)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "photos: -out is required")
		os.Exit(2)
	}
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "photos:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	car, err := testfiles.RembgFile("car-1.jpg")
	if err != nil {
		return err
	}
	files := map[string][]byte{"car-1.jpg": car}
	for _, size := range []image.Point{testfiles.Photo03MP, testfiles.Photo15MP, testfiles.Photo12MP} {
		name := "photo-" + testfiles.PhotoName(size)
		files[name+".jpg"] = testfiles.PhotoJPEG(size)
		files[name+".png"] = testfiles.PhotoPNG(size)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
		fmt.Printf("%s\t%d bytes\n", filepath.Join(dir, name), len(data))
	}
	return nil
}
