package inference

/*
#cgo CFLAGS: -I${SRCDIR}/ortapi
#include <stdlib.h>
#include "ortbind.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// signature reads a model's inputs and outputs, only the outputs named in
// want when it names any, from a temporary session. dir is the folder of
// the model's external data ("" for none): a model loaded from memory has
// no folder of its own, and onnxruntime_go's own signature read cannot be
// told one, so models with external data would not load.
func (r *Runtime) signature(model []byte, dir string, want []string) (inputs, outputs []TensorInfo, err error) {
	if inputs, outputs, err = r.readSignature(model, dir); err != nil {
		return nil, nil, fmt.Errorf("reading model signature: %w", err)
	}
	if len(want) > 0 {
		if outputs, err = selectOutputs(outputs, want); err != nil {
			return nil, nil, err
		}
	}
	return inputs, outputs, nil
}

func (r *Runtime) readSignature(model []byte, dir string) (inputs, outputs []TensorInfo, err error) {
	if len(model) == 0 {
		return nil, nil, errors.New("empty model")
	}
	if err := r.initBinding(); err != nil {
		return nil, nil, err
	}
	var cdir *C.char
	if dir != "" {
		cdir = C.CString(dir)
		defer C.free(unsafe.Pointer(cdir))
	}
	var sess *C.OrtSession
	if err := cError(C.ob_info_session(unsafe.Pointer(&model[0]), C.size_t(len(model)), cdir, &sess)); err != nil {
		return nil, nil, err
	}
	defer C.ob_release_session(sess)
	var nin, nout C.size_t
	if err := cError(C.ob_io_count(sess, &nin, &nout)); err != nil {
		return nil, nil, err
	}
	read := func(output C.int, n C.size_t) ([]TensorInfo, error) {
		infos := make([]TensorInfo, int(n))
		for i := range infos {
			var (
				name *C.char
				typ  C.int
				dims [16]C.int64_t
				rank C.size_t
			)
			err := cError(C.ob_io(sess, output, C.size_t(i), &name, &typ, &dims[0], C.size_t(len(dims)), &rank))
			if name != nil {
				infos[i].Name = C.GoString(name)
				C.free(unsafe.Pointer(name))
			}
			if err != nil {
				return nil, err
			}
			if typ == 0 {
				return nil, fmt.Errorf("%s: only tensor inputs and outputs are supported", infos[i].Name)
			}
			if infos[i].DType = DType(typ); infos[i].DType.Size() == 0 {
				return nil, fmt.Errorf("%s: unsupported element type %d", infos[i].Name, int(typ))
			}
			infos[i].Shape = goShape(dims[:rank])
		}
		return infos, nil
	}
	if inputs, err = read(0, nin); err != nil {
		return nil, nil, err
	}
	if outputs, err = read(1, nout); err != nil {
		return nil, nil, err
	}
	return inputs, outputs, nil
}
