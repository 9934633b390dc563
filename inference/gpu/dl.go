package gpu

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

// probe_library loads name the way the CUDA provider would (the dynamic
// linker's search: LD_LIBRARY_PATH, the ld.so cache, the default folders),
// copies where it was found into path, and unloads it again. It returns 0
// when found, else -1 with the linker's message in err.
static int probe_library(const char *name, char *path, size_t pathlen, char *err, size_t errlen) {
	dlerror();
	void *h = dlopen(name, RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		strncpy(err, e ? e : "not found", errlen - 1);
		err[errlen - 1] = 0;
		return -1;
	}
	struct link_map *lm = NULL;
	path[0] = 0;
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != NULL && lm->l_name != NULL) {
		strncpy(path, lm->l_name, pathlen - 1);
		path[pathlen - 1] = 0;
	}
	dlclose(h);
	return 0;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// findLibrary looks a shared library up as the dynamic linker would and
// says where it is. Loading it runs its initialisers, as the CUDA provider
// would when it loads it; it is unloaded again at once.
func findLibrary(name string) (string, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var path [4096]C.char
	var msg [1024]C.char
	if C.probe_library(cname, &path[0], C.size_t(len(path)), &msg[0], C.size_t(len(msg))) != 0 {
		return "", errors.New(C.GoString(&msg[0]))
	}
	return C.GoString(&path[0]), nil
}
