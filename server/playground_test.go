package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/imgserve/imgserve/internal/testmodels"
	"github.com/imgserve/imgserve/server/playground"
)

// chromium finds Debian's chromium (or another Chrome). Without one the
// browser tests skip, except under CI=true, where .ci/run installs it and
// its absence is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but no chromium on PATH: the browser tests need it (apt-get install chromium; .ci/run does)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium): skipping the browser tests")
	return ""
}

// screenshotDir is where the browser tests save their screenshots: the
// test's temporary folder, or IMGSERVE_SCREENSHOTS to keep them.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("IMGSERVE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// browserLog is what the page did that the tests check afterwards: every
// request it made, the CSP header of each page response, script errors
// and CSP violations.
type browserLog struct {
	mu         sync.Mutex
	requests   []string
	pages      map[string]string // URL -> its Content-Security-Policy
	exceptions []string
}

func (l *browserLog) listen(t *testing.T, ctx context.Context) {
	err := chromedp.Listen(ctx, func(ev any) {
		l.mu.Lock()
		defer l.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			l.requests = append(l.requests, e.Request.URL)
		case *network.EventResponseReceived:
			switch e.Type {
			case network.ResourceTypeDocument, network.ResourceTypeScript, network.ResourceTypeStylesheet:
				csp := ""
				for k, v := range e.Response.Headers {
					if strings.EqualFold(k, "Content-Security-Policy") {
						csp = fmt.Sprint(v)
					}
				}
				l.pages[e.Response.URL] = csp
			}
		case *cdpruntime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			l.exceptions = append(l.exceptions, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPlaygroundInBrowser drives the playground in headless Chromium as a
// person would, section by section, on a server with the real u2netp and
// the synthetic models, and checks each result from inside the page. One
// browser serves every step.
func TestPlaygroundInBrowser(t *testing.T) {
	exe := chromium(t)
	if testing.Short() {
		t.Skip("starts a browser and every kind of model")
	}
	srv := startServer(t, fullConfig(), testmodels.Dir(), func(o *Options) { o.Playground = true })
	files := playgroundFiles(t)
	shots := screenshotDir(t)

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()

	log := &browserLog{pages: map[string]string{}}
	log.listen(t, ctx)
	// Collect CSP violations from before the page's own script runs.
	browse(t, ctx, "start", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `window.__csp = [];
			document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));`})
		return err
	}))
	browse(t, ctx, "open the page",
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(css(`#models-table tbody tr`)),
		chromedp.WaitReady(css(`#rb-model option[value="u2netp"]`)),
	)

	t.Run("models", func(t *testing.T) {
		var rows []struct{ Name, State, Reason string }
		browse(t, ctx, "read the table", eval(&rows, `[...document.querySelectorAll("#models-table tbody tr")].map((tr) => ({
			Name: tr.cells[0].textContent, State: tr.cells[2].textContent, Reason: tr.cells[3].textContent}))`))
		states := map[string]string{}
		for _, r := range rows {
			states[r.Name] = r.State
			if r.Name == "clip-large" && (r.State != "unavailable" || !strings.Contains(r.Reason, "missing-clip-large.onnx")) {
				t.Errorf("clip-large: %q, reason %q: want unavailable, naming its missing file", r.State, r.Reason)
			}
		}
		if states["u2netp"] != "ready" || states["lama"] != "ready" || len(rows) != len(srv.Registry.Models()) {
			t.Errorf("models table: %v", rows)
		}
	})

	t.Run("background removal", func(t *testing.T) {
		browse(t, ctx, "remove the background",
			chromedp.SetUploadFiles(css(`#rb-file`), []string{files["car.jpg"]}),
			chromedp.SetValue(css(`#rb-model`), "u2netp"),
			chromedp.Click(css(`#rb-form button[type=submit]`)),
			chromedp.WaitVisible(css(`#rb-result`)),
		)
		var got struct {
			W, H         int
			Has0, Has255 bool
			Download     string
			Stages       int
		}
		var clipBefore, clipAfter, colourBackdrop string
		browse(t, ctx, "move the slider and pick a colour",
			eval(&clipBefore, `document.querySelector("#rb-compare img.after").style.clipPath`),
			chromedp.Focus(css(`#rb-compare-slider`)),
			chromedp.KeyEvent(kb.ArrowLeft), chromedp.KeyEvent(kb.ArrowLeft),
			eval(&clipAfter, `document.querySelector("#rb-compare img.after").style.clipPath`),
			chromedp.Click(css(`#rb-bg-colour`)),
			eval(&colourBackdrop, `document.querySelector("#rb-compare img.after").style.backgroundColor`),
			chromedp.Click(css(`#rb-bg-checker`)),
		)
		browse(t, ctx, "read the cut-out", evalAsync(&got, `(async () => {
			const img = document.querySelector("#rb-compare img.after");
			await img.decode();
			const c = document.createElement("canvas");
			c.width = img.naturalWidth; c.height = img.naturalHeight;
			const g = c.getContext("2d");
			g.drawImage(img, 0, 0);
			const d = g.getImageData(0, 0, c.width, c.height).data;
			let has0 = false, has255 = false;
			for (let i = 3; i < d.length; i += 4) { if (d[i] === 0) has0 = true; else if (d[i] === 255) has255 = true; }
			return {W: c.width, H: c.height, Has0: has0, Has255: has255, Download: document.getElementById("rb-download").href,
				Stages: document.querySelectorAll("#rb-timing .bar span").length};
		})()`))
		if got.W != 480 || got.H != 360 || !got.Has0 || !got.Has255 {
			t.Errorf("cut-out %dx%d, alpha 0: %v, alpha 255: %v; want 480x360 with both", got.W, got.H, got.Has0, got.Has255)
		}
		if !strings.HasPrefix(got.Download, "blob:"+srv.URL) || got.Stages < 2 {
			t.Errorf("download link %q, %d Server-Timing stages", got.Download, got.Stages)
		}
		if clipBefore != "inset(0px 0px 0px 50%)" || clipAfter != "inset(0px 0px 0px 48%)" || colourBackdrop == "" {
			t.Errorf("slider by keyboard: %q then %q; colour backdrop %q", clipBefore, clipAfter, colourBackdrop)
		}
		screenshots(t, ctx, shots, "background")
	})

	t.Run("corrupt file", func(t *testing.T) {
		// The server's own message for these bytes, to find on the page.
		corrupt, _ := os.ReadFile(files["corrupt.png"])
		_, _, body := do(t, "POST", srv.URL+"/v1/remove-background", map[string]string{"Content-Type": "image/png"}, corrupt)
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
			t.Fatalf("no error message: %s", body)
		}
		var shown string
		browse(t, ctx, "send a corrupt file",
			chromedp.SetUploadFiles(css(`#rb-file`), []string{files["corrupt.png"]}),
			chromedp.Click(css(`#rb-form button[type=submit]`)),
			chromedp.WaitVisible(css(`#rb-error`)),
			into(&shown, chromedp.Text(css(`#rb-error`))),
		)
		if !strings.Contains(shown, e.Error.Message) || !strings.Contains(shown, "415") {
			t.Errorf("the page shows %q; the server said %q", shown, e.Error.Message)
		}
		screenshots(t, ctx, shots, "background-error")
	})

	t.Run("inpainting", func(t *testing.T) {
		browse(t, ctx, "pick the image",
			chromedp.SetUploadFiles(css(`#ip-file`), []string{files["car.png"]}),
			chromedp.WaitVisible(css(`#ip-paint`)),
			chromedp.SetValue(css(`#ip-size`), "30"),
			chromedp.ScrollIntoView(css(`#ip-canvas`)),
		)
		var box struct{ X, Y, W, H float64 }
		browse(t, ctx, "find the canvas", eval(&box, `(() => { const r = document.getElementById("ip-canvas").getBoundingClientRect();
			return {X: r.left, Y: r.top, W: r.width, H: r.height}; })()`))
		// Two strokes with the pointer; undo the second.
		stroke(t, ctx, box.X+box.W*0.30, box.Y+box.H*0.40, box.X+box.W*0.55, box.Y+box.H*0.45)
		stroke(t, ctx, box.X+box.W*0.10, box.Y+box.H*0.80, box.X+box.W*0.20, box.Y+box.H*0.85)
		var marks string
		browse(t, ctx, "undo", chromedp.Click(css(`#ip-undo`)), into(&marks, chromedp.Text(css(`#ip-marks`))))
		if marks != "1 brush stroke(s), 0 box(es) marked." {
			t.Errorf("after two strokes and an undo: %q", marks)
		}
		browse(t, ctx, "inpaint",
			chromedp.Click(css(`#ip-form button[type=submit]`)),
			chromedp.WaitVisible(css(`#ip-result`)),
		)
		var got struct {
			W, H, Painted, Inside, Outside int
			Error                          string
		}
		browse(t, ctx, "compare", evalAsync(&got, inpaintCheck))
		t.Logf("inpainting: %dx%d, %d px painted, %d of them changed, %d changed outside the painted area (grown by 8 px)",
			got.W, got.H, got.Painted, got.Inside, got.Outside)
		if got.Error != "" || got.W != 480 || got.Painted == 0 || got.Inside < got.Painted/2 || got.Outside != 0 {
			t.Errorf("inpainting changed %d of %d painted pixels and %d outside: %s", got.Inside, got.Painted, got.Outside, got.Error)
		}
		screenshots(t, ctx, shots, "inpaint")

		// Boxes by keyboard alone go to /v1/remove-watermark.
		var meta string
		browse(t, ctx, "boxes by keyboard",
			chromedp.Click(css(`#ip-clear`)),
			chromedp.Focus(css(`#ip-bx`)), chromedp.KeyEvent(kb.End), chromedp.KeyEvent(kb.Backspace), chromedp.KeyEvent("40"),
			chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.End), chromedp.KeyEvent(kb.Backspace), chromedp.KeyEvent("50"),
			chromedp.Focus(css(`#ip-addbox`)), chromedp.KeyEvent(kb.Enter),
			into(&marks, chromedp.Text(css(`#ip-marks`))),
			chromedp.Focus(css(`#ip-form button[type=submit]`)), chromedp.KeyEvent(kb.Enter),
			chromedp.WaitVisible(css(`#ip-result`)),
			poll(`document.getElementById("ip-meta").textContent.startsWith("/v1/remove-watermark")`),
			into(&meta, chromedp.Text(css(`#ip-meta`))),
		)
		if marks != "0 brush stroke(s), 1 box(es) marked." {
			t.Errorf("after adding a box: %q", marks)
		}
		browse(t, ctx, "compare", evalAsync(&got, inpaintCheck))
		if got.Error != "" || got.Inside == 0 || got.Outside != 0 {
			t.Errorf("watermark box: %+v", got)
		}
	})

	t.Run("captioning", func(t *testing.T) {
		var caption, meta string
		browse(t, ctx, "caption",
			chromedp.SetUploadFiles(css(`#cp-file`), []string{files["car.jpg"]}),
			chromedp.SetValue(css(`#cp-tokens`), "8"),
			chromedp.Click(css(`#cp-form button[type=submit]`)),
			chromedp.WaitVisible(css(`#cp-result`)),
			into(&caption, chromedp.Text(css(`#cp-text`))),
			into(&meta, chromedp.Text(css(`#cp-meta`))),
		)
		// The synthetic decoder's words are arbitrary; what matters is that
		// the caption the API returned is shown.
		if strings.TrimSpace(caption) == "" || !strings.HasPrefix(meta, "vit-gpt2,") {
			t.Errorf("caption %q, %q", caption, meta)
		}
		screenshots(t, ctx, shots, "caption")
	})

	t.Run("search", func(t *testing.T) {
		var added string
		browse(t, ctx, "add three images",
			chromedp.SetUploadFiles(css(`#cs-files`), []string{files["car.jpg"], files["cloth-1.jpg"], files["disc.png"]}),
			chromedp.Click(css(`#cs-add-form button[type=submit]`)),
			poll(`document.getElementById("cs-added").textContent.startsWith("Added")`),
			into(&added, chromedp.Text(css(`#cs-added`))),
		)
		if added != "Added 3 image(s); the collection holds 3." {
			t.Errorf("%q", added)
		}
		var ids []string
		browse(t, ctx, "search by image",
			chromedp.SetUploadFiles(css(`#cs-qimage`), []string{files["cloth-1.jpg"]}),
			chromedp.Click(css(`#cs-query-form button[type=submit]`)),
			chromedp.WaitVisible(css(`#cs-grid li`)),
			eval(&ids, `[...document.querySelectorAll("#cs-grid li")].map((li) => li.dataset.id + " " + li.querySelector(".score").textContent)`),
		)
		if len(ids) != 3 || !strings.HasPrefix(ids[0], "cloth-1 score 1.0000") {
			t.Errorf("search by cloth-1.jpg: %q, want cloth-1 first with score 1", ids)
		}
		var stages []string
		browse(t, ctx, "timing", eval(&stages, `[...document.querySelectorAll("#cs-timing li")].map((li) => li.textContent.split(" ")[0])`))
		if !slices.Equal(stages, []string{"embed", "search"}) {
			t.Errorf("search's Server-Timing stages: %q", stages)
		}
		screenshots(t, ctx, shots, "search")
		browse(t, ctx, "search by text",
			chromedp.Click(css(`#cs-by-text`)),
			chromedp.SendKeys(css(`#cs-text`), "a red car"),
			chromedp.Click(css(`#cs-query-form button[type=submit]`)),
			poll(`document.querySelectorAll("#cs-grid li").length === 3 && !document.querySelector("#cs-query-form button").disabled`),
			eval(&ids, `[...document.querySelectorAll("#cs-grid li")].map((li) => li.dataset.id)`),
		)
		if len(ids) != 3 {
			t.Errorf("search by text: %q", ids)
		}
	})

	t.Run("generation", func(t *testing.T) {
		var got struct {
			N, W  int
			Meta  string
			Error string
		}
		browse(t, ctx, "generate",
			chromedp.SetValue(css(`#gn-size`), "256x256"),
			chromedp.SetValue(css(`#gn-steps`), "2"),
			chromedp.SetValue(css(`#gn-n`), "2"),
			chromedp.SetValue(css(`#gn-seed`), "42"),
			chromedp.Click(css(`#gn-form button[type=submit]`)),
			chromedp.WaitVisible(css(`#gn-result`)),
			evalAsync(&got, `(async () => {
				const imgs = [...document.querySelectorAll("#gn-grid img")];
				await Promise.all(imgs.map((i) => i.decode()));
				return {N: imgs.length, W: imgs[0].naturalWidth, Meta: document.getElementById("gn-meta").textContent};
			})()`),
		)
		if got.N != 2 || got.W != 256 || !strings.HasPrefix(got.Meta, "sd, 256x256, 2 steps") {
			t.Errorf("generated %d images %d px wide: %q", got.N, got.W, got.Meta)
		}
		screenshots(t, ctx, shots, "generate")
	})

	t.Run("keyboard and labels", func(t *testing.T) {
		var unlabelled []string
		browse(t, ctx, "labels", eval(&unlabelled, `[...document.querySelectorAll("input, select, textarea, button, canvas")].filter((el) => {
			if (el.tagName === "BUTTON") return el.textContent.trim() === "";
			return !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby");
		}).map((el) => el.id || el.outerHTML)`))
		if len(unlabelled) > 0 {
			t.Errorf("controls without a label: %q", unlabelled)
		}
		// Tab from the top of the page through every control.
		var controls []string
		browse(t, ctx, "list controls", eval(&controls, `[...document.querySelectorAll("input, select, textarea, button, a[href]")]
			.filter((el) => el.offsetParent !== null && !el.disabled && el.type !== "radio").map((el) => el.id).filter((id) => id)`))
		reached := map[string]bool{}
		browse(t, ctx, "top", eval(new(bool), `document.activeElement.blur(); window.scrollTo(0, 0); true`))
		for range 3 * len(controls) {
			var id string
			browse(t, ctx, "tab", chromedp.KeyEvent(kb.Tab), eval(&id, `document.activeElement.id`))
			reached[id] = true
		}
		for _, id := range controls {
			if !reached[id] {
				t.Errorf("#%s cannot be reached with Tab", id)
			}
		}
		t.Logf("%d controls, each reached with Tab", len(controls))
	})

	t.Run("models screenshots", func(t *testing.T) { screenshots(t, ctx, shots, "models") })

	// A server that requires keys: the page still loads, shows the 401's
	// message, and works once the key is typed in. (Another tab, whose
	// requests go to that server's origin, outside the log below.)
	t.Run("API key", func(t *testing.T) {
		keyed := startServer(t, plainAffineConfig, testmodels.Dir(), func(o *Options) {
			o.Keys = keyFile(t, "secret")
			o.Playground = true
		})
		tab, closeTab := chromedp.NewContext(ctx)
		defer closeTab()
		var msg string
		var rows int
		var hidden bool
		browse(t, tab, "without the key",
			chromedp.Navigate(keyed.URL+"/"),
			chromedp.WaitVisible(css(`#models-error`)),
			into(&msg, chromedp.Text(css(`#models-error`))),
		)
		if !strings.HasPrefix(msg, "401 Unauthorized: an API key is required") {
			t.Errorf("without the key the models panel says %q", msg)
		}
		browse(t, tab, "with the key",
			chromedp.SendKeys(css(`#api-key`), "secret"),
			chromedp.Click(css(`#models-refresh`)),
			chromedp.WaitVisible(css(`#models-table tbody tr`)),
			eval(&rows, `document.querySelectorAll("#models-table tbody tr").length`),
			eval(&hidden, `document.getElementById("models-error").hidden`),
		)
		if rows != 1 || !hidden {
			t.Errorf("with the key: %d rows, error hidden: %v", rows, hidden)
		}
	})

	// What the page did, all along.
	var violations []string
	browse(t, ctx, "CSP violations", eval(&violations, `window.__csp`))
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(violations) > 0 {
		t.Errorf("Content-Security-Policy violations: %q", violations)
	}
	if len(log.exceptions) > 0 {
		t.Errorf("script errors: %q", log.exceptions)
	}
	origin, _ := url.Parse(srv.URL)
	other := 0
	for _, r := range log.requests {
		u, err := url.Parse(r)
		if err != nil || !(u.Scheme == "blob" || (u.Scheme == "http" && u.Host == origin.Host)) {
			t.Errorf("request to another origin: %s", r)
			other++
		}
	}
	t.Logf("the page made %d requests, %d of them to another origin", len(log.requests), other)
	for _, name := range []string{"/", "/playground/app.js", "/playground/app.css"} {
		if csp, ok := log.pages[srv.URL+name]; !ok || csp != playground.CSP {
			t.Errorf("page response %s: Content-Security-Policy %q (seen: %v)", name, csp, ok)
		}
	}
}

// inpaintCheck compares, in the page, the inpainting's result with the
// picked image: pixels changed inside the marks, and outside the marks
// grown by 8 px (the server's mask dilation is 4).
const inpaintCheck = `(async () => {
	const before = ip.image, after = document.querySelector("#ip-compare img.after");
	await after.decode();
	const w = before.naturalWidth, h = before.naturalHeight;
	if (after.naturalWidth !== w || after.naturalHeight !== h) return {Error: "result " + after.naturalWidth + "x" + after.naturalHeight};
	const pixels = (draw) => {
		const c = document.createElement("canvas");
		c.width = w; c.height = h;
		const g = c.getContext("2d");
		g.fillStyle = g.strokeStyle = "#fff";
		draw(g);
		return g.getImageData(0, 0, w, h).data;
	};
	const a = pixels((g) => g.drawImage(before, 0, 0)), b = pixels((g) => g.drawImage(after, 0, 0));
	const painted = pixels((g) => ip.marks.forEach((m) => paintMark(g, m)));
	const grown = pixels((g) => ip.marks.forEach((m) => paintMark(g, m.kind === "box"
		? {kind: "box", box: [m.box[0] - 8, m.box[1] - 8, m.box[2] + 16, m.box[3] + 16]} : {...m, size: m.size + 16})));
	let inside = 0, outside = 0, n = 0;
	for (let i = 0; i < w * h * 4; i += 4) {
		const changed = a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2];
		if (painted[i + 3] === 255) { n++; if (changed) inside++; }
		if (grown[i + 3] === 0 && changed) outside++;
	}
	return {W: w, H: h, Painted: n, Inside: inside, Outside: outside};
})()`

// stroke drags the mouse from one point to another in steps: Chromium
// turns these into the pointer events the page paints with.
func stroke(t *testing.T, ctx context.Context, x0, y0, x1, y1 float64) {
	t.Helper()
	steps := []step{chromedp.MouseEvent(chromedp.MousePressed, x0, y0, chromedp.ButtonLeft, chromedp.ClickCount(1))}
	for i := 1; i <= 10; i++ {
		f := float64(i) / 10
		steps = append(steps, chromedp.MouseEvent(chromedp.MouseMoved, x0+(x1-x0)*f, y0+(y1-y0)*f, chromedp.ButtonLeft))
	}
	steps = append(steps, chromedp.MouseEvent(chromedp.MouseReleased, x1, y1, chromedp.ButtonLeft, chromedp.ClickCount(1)))
	browse(t, ctx, "stroke", steps...)
}

func browse(t *testing.T, ctx context.Context, what string, steps ...step) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

type step = chromedp.Action[chromedp.Void]

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// into runs an action that returns a value and keeps the value in dst.
func into[T any](dst *T, a chromedp.Action[T]) step {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, tg)
		if err == nil {
			*dst = v
		}
		return chromedp.Void{}, err
	}
}

// eval runs JavaScript in the page and decodes its value into dst.
func eval[T any](dst *T, js string) step { return into(dst, chromedp.Evaluate[T](js)) }

// evalAsync is eval for an expression that gives a promise.
func evalAsync[T any](dst *T, js string) step {
	return into(dst, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
}

// poll waits until a JavaScript expression is true.
func poll(js string) step {
	var ok bool
	return into(&ok, chromedp.Poll[bool](js))
}

// screenshots saves a section at 1280 px wide, the viewport the tests
// drive the page in, and at 360 px, a small phone's, where the page must
// not scroll sideways.
func screenshots(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	shoot(t, ctx, dir, name, 1280)
	var width int
	browse(t, ctx, "narrow", chromedp.EmulateViewport(360, 780, chromedp.EmulateMobile),
		eval(&width, `document.documentElement.scrollWidth`))
	if width > 360 {
		t.Errorf("at 360 px the page is %d px wide: it scrolls sideways", width)
	}
	shoot(t, ctx, dir, name, 360)
	browse(t, ctx, "wide again", chromedp.EmulateViewport(1280, 900))
}

// shoot saves a screenshot of a section (its id, or a name whose first
// word is one) at the current viewport width.
func shoot(t *testing.T, ctx context.Context, dir, name string, width int) {
	t.Helper()
	id, _, _ := strings.Cut(name, "-")
	var buf []byte
	browse(t, ctx, "screenshot "+name,
		chromedp.ScrollIntoView(css("#"+id)),
		into(&buf, chromedp.Screenshot(css("#"+id), chromedp.NodeVisible)),
	)
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, width))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// playgroundFiles writes the images the tests pick in the browser.
func playgroundFiles(t *testing.T) map[string]string {
	dir := t.TempDir()
	car := rembgTestdata(t, "car-1.jpg")
	img, err := jpeg.Decode(bytes.NewReader(car))
	if err != nil {
		t.Fatal(err)
	}
	var carPNG bytes.Buffer
	png.Encode(&carPNG, img)
	out := map[string]string{}
	for name, data := range map[string][]byte{
		"car.jpg":     car,
		"car.png":     carPNG.Bytes(), // lossless, to compare pixels exactly
		"cloth-1.jpg": rembgTestdata(t, "cloth-1.jpg"),
		"disc.png":    testPNG(96, 96),
		"corrupt.png": []byte("this is not an image, whatever its name says"),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	return out
}

// TestPlaygroundPages checks each page response's headers, and that
// --playground=false turns the page off but not the API or the document.
func TestPlaygroundPages(t *testing.T) {
	on := startServer(t, "models: []\n", t.TempDir(), func(o *Options) { o.Playground = true })
	paths := []string{"/"}
	for _, name := range playground.Names() {
		paths = append(paths, "/playground/"+name)
	}
	for _, path := range paths {
		code, h, body := do(t, "GET", on.URL+path, nil, nil)
		if code != 200 || h.Get("Content-Security-Policy") != playground.CSP || h.Get("X-Content-Type-Options") != "nosniff" || len(body) == 0 {
			t.Errorf("GET %s: %d, CSP %q", path, code, h.Get("Content-Security-Policy"))
		}
	}
	for _, path := range []string{"/playground/", "/playground/..%2Fplayground.go", "/playground/static", "/index.html"} {
		if code, _, _ := do(t, "GET", on.URL+path, nil, nil); code != 404 {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
	// The page names no other origin: no http(s) URL but in text.
	for _, name := range playground.Names() {
		data, _, _ := playground.File(name)
		for _, s := range []string{"http://", "https://", "//cdn", "@import"} {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s contains %q", name, s)
			}
		}
	}

	off := startServer(t, "models: []\n", t.TempDir())
	code, _, body := do(t, "GET", off.URL+"/", nil, nil)
	if code != 404 || !bytes.Contains(body, []byte("--playground=false")) {
		t.Errorf("GET / with the playground off: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", off.URL+"/playground/app.js", nil, nil); code != 404 {
		t.Errorf("GET /playground/app.js with the playground off: %d", code)
	}
	if code, _, _ := do(t, "GET", off.URL+"/openapi.json", nil, nil); code != 200 {
		t.Errorf("GET /openapi.json with the playground off: %d", code)
	}
}
