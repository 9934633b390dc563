package inference

/*
#cgo CFLAGS: -I${SRCDIR}/ortapi
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "ortbind.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

// cError turns a message from ortbind.c into an error, freeing it.
func cError(msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}

// bindingAPI points ortbind.c at the C API of the runtime's library, once
// per Runtime: a process has one at a time, and a later one may load the
// library anew.
type bindingAPI struct {
	once sync.Once
	err  error
}

func (r *Runtime) initBinding() error {
	r.api.once.Do(func() {
		clib := C.CString(r.lib)
		defer C.free(unsafe.Pointer(clib))
		r.api.err = cError(C.ob_init(clib))
	})
	return r.api.err
}

// ortSession digs the C session out of onnxruntime_go, which keeps it
// unexported. The layout is that of the pinned v1.27.0; a test fails if it
// changes.
func ortSession(s *ort.DynamicAdvancedSession) (*C.OrtSession, error) {
	inner := reflect.ValueOf(s).Elem().FieldByName("s")
	if !inner.IsValid() || inner.Kind() != reflect.Pointer || inner.IsNil() {
		return nil, errors.New("onnxruntime_go's DynamicAdvancedSession has no field s: the binding layer needs updating")
	}
	p := inner.Elem().FieldByName("ortSession")
	if !p.IsValid() || p.Kind() != reflect.Pointer || p.IsNil() {
		return nil, errors.New("onnxruntime_go's AdvancedSession has no field ortSession: the binding layer needs updating")
	}
	return (*C.OrtSession)(p.UnsafePointer()), nil
}

// bound is what RunBound needs from ONNX Runtime, made once per session.
type bound struct {
	sess   *C.OrtSession
	host   *C.OrtMemoryInfo // host memory
	dev    *C.OrtMemoryInfo // the session's device memory: the GPU's, or host memory on a CPU
	alloc  *C.OrtAllocator  // allocates in dev
	device int              // CUDA ordinal for copies; -1 on a CPU
}

type boundOnce struct {
	once sync.Once
	b    *bound
	err  error
}

func (o *boundOnce) release() {
	if b := o.b; b != nil {
		C.ob_release_allocator(b.alloc)
		C.ob_release_memory_info(b.dev)
		C.ob_release_memory_info(b.host)
		o.b = nil
	}
}

func (s *Session) binding() (*bound, error) {
	s.bound.once.Do(func() { s.bound.b, s.bound.err = s.newBound() })
	return s.bound.b, s.bound.err
}

func (s *Session) newBound() (*bound, error) {
	if err := s.rt.initBinding(); err != nil {
		return nil, err
	}
	sess, err := ortSession(s.sess)
	if err != nil {
		return nil, err
	}
	b := &bound{sess: sess, device: -1}
	name, id := "Cpu", 0
	if s.rt.device.CUDA {
		name, id, b.device = "Cuda", s.rt.device.ID, s.rt.device.ID
	}
	cpu, cname := C.CString("Cpu"), C.CString(name)
	defer C.free(unsafe.Pointer(cpu))
	defer C.free(unsafe.Pointer(cname))
	if err := cError(C.ob_memory_info(cpu, 0, &b.host)); err != nil {
		return nil, err
	}
	if err := cError(C.ob_memory_info(cname, C.int(id), &b.dev)); err != nil {
		C.ob_release_memory_info(b.host)
		return nil, err
	}
	if err := cError(C.ob_allocator(sess, b.dev, &b.alloc)); err != nil {
		C.ob_release_memory_info(b.dev)
		C.ob_release_memory_info(b.host)
		return nil, fmt.Errorf("allocator for %s memory: %w", name, err)
	}
	return b, nil
}

// DeviceTensor is a tensor in a session's device memory (the GPU's, on a
// CUDA device; host memory owned by ONNX Runtime on a CPU): an output of
// RunBound kept there to be the input of a later run, such as a decoder's
// key/value cache, without a round trip through Go memory. Release it
// before its session closes.
type DeviceTensor struct {
	DType DType
	Shape []int64
	v     *C.OrtValue
	b     *bound
}

var liveDeviceTensors atomic.Int64

// LiveDeviceTensors counts the device tensors not yet released, for leak
// tests.
func LiveDeviceTensors() int64 { return liveDeviceTensors.Load() }

func newDeviceTensor(v *C.OrtValue, b *bound) (*DeviceTensor, error) {
	dt, shape, _, err := tensorInfo(v)
	if err != nil {
		C.ob_release_value(v)
		return nil, err
	}
	liveDeviceTensors.Add(1)
	return &DeviceTensor{DType: dt, Shape: shape, v: v, b: b}, nil
}

func tensorInfo(v *C.OrtValue) (DType, []int64, unsafe.Pointer, error) {
	var (
		typ  C.int
		dims [16]C.int64_t
		rank C.size_t
		data unsafe.Pointer
	)
	if err := cError(C.ob_tensor_info(v, &typ, &dims[0], C.size_t(len(dims)), &rank, &data)); err != nil {
		return 0, nil, nil, err
	}
	return DType(typ), goShape(dims[:rank]), data, nil
}

// goShape copies dimensions out of C.
func goShape(dims []C.int64_t) []int64 {
	shape := make([]int64, len(dims))
	for i, d := range dims {
		shape[i] = int64(d)
	}
	return shape
}

func (d *DeviceTensor) bytes() int { return outputBytes(d.DType, d.Shape) }

// Host copies the tensor into Go memory.
func (d *DeviceTensor) Host() (Tensor, error) {
	if d.v == nil {
		return Tensor{}, errors.New("device tensor used after Release")
	}
	_, _, data, err := tensorInfo(d.v)
	if err != nil {
		return Tensor{}, err
	}
	buf := make([]byte, d.bytes())
	if len(buf) > 0 {
		if err := cError(C.ob_copy(C.int(d.b.device), unsafe.Pointer(&buf[0]), data, C.size_t(len(buf)))); err != nil {
			return Tensor{}, err
		}
	}
	return Tensor{DType: d.DType, Shape: append([]int64(nil), d.Shape...), Data: buf}, nil
}

// Release frees the tensor's memory. It is safe to call twice.
func (d *DeviceTensor) Release() {
	if d != nil && d.v != nil {
		C.ob_release_value(d.v)
		d.v = nil
		liveDeviceTensors.Add(-1)
	}
}

// Upload copies a host tensor into the session's device memory, for an
// input that many runs share (a decoder's encoder states).
func (s *Session) Upload(t Tensor) (*DeviceTensor, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	b, err := s.binding()
	if err != nil {
		return nil, err
	}
	var v *C.OrtValue
	shape := cShape(t.Shape)
	if err := cError(C.ob_alloc_tensor(b.alloc, shapePtr(shape), C.size_t(len(shape)), C.int(t.DType), &v)); err != nil {
		return nil, err
	}
	d, err := newDeviceTensor(v, b)
	if err != nil {
		return nil, err
	}
	if len(t.Data) > 0 {
		_, _, data, err := tensorInfo(v)
		if err == nil {
			err = cError(C.ob_copy(C.int(b.device), data, unsafe.Pointer(&t.Data[0]), C.size_t(len(t.Data))))
		}
		if err != nil {
			d.Release()
			return nil, err
		}
	}
	return d, nil
}

func cShape(shape []int64) []C.int64_t {
	out := make([]C.int64_t, len(shape))
	for i, d := range shape {
		out[i] = C.int64_t(d)
	}
	return out
}

func shapePtr(shape []C.int64_t) *C.int64_t {
	if len(shape) == 0 {
		return nil
	}
	return &shape[0]
}

// pinnedPool gives a CUDA session's scheduler page-locked batch buffers;
// a CPU session has no use for them.
func (s *Session) pinnedPool(keep int) *pinnedPool {
	if !s.rt.device.CUDA {
		return nil
	}
	return cudaPinnedPool(keep)
}

// BoundInput is one input of RunBound: a host tensor, or a device tensor.
type BoundInput struct {
	Host   Tensor
	Device *DeviceTensor
}

// RunBound runs the session once with ONNX Runtime's I/O binding. Inputs
// in device memory are used where they are; host inputs are read without a
// copy on the Go side. Output i stays in device memory when keep[i], and
// comes back in Go memory otherwise.
func (s *Session) RunBound(inputs []BoundInput, keep []bool) ([]Tensor, []*DeviceTensor, error) {
	if len(inputs) != len(s.inputs) || len(keep) != len(s.outputs) {
		return nil, nil, fmt.Errorf("model takes %d inputs and gives %d outputs, got %d inputs and %d output placements",
			len(s.inputs), len(s.outputs), len(inputs), len(keep))
	}
	b, err := s.binding()
	if err != nil {
		return nil, nil, err
	}
	var io *C.OrtIoBinding
	if err := cError(C.ob_binding(b.sess, &io)); err != nil {
		return nil, nil, err
	}
	defer C.ob_release_binding(io)

	var hostValues []*C.OrtValue
	defer func() {
		for _, v := range hostValues {
			C.ob_release_value(v)
		}
	}()
	var pinned runtime.Pinner // host inputs stay put while ONNX Runtime holds them
	defer pinned.Unpin()
	for i, in := range inputs {
		info := s.inputs[i]
		var v *C.OrtValue
		switch {
		case in.Device != nil:
			if in.Device.v == nil || in.Device.b != b {
				return nil, nil, fmt.Errorf("input %s: a device tensor released, or from another session", info.Name)
			}
			if in.Device.DType != info.DType {
				return nil, nil, fmt.Errorf("input %s wants %v, got %v", info.Name, info.DType, in.Device.DType)
			}
			v = in.Device.v
		default:
			t := in.Host
			if t.DType != info.DType {
				return nil, nil, fmt.Errorf("input %s wants %v, got %v", info.Name, info.DType, t.DType)
			}
			if err := t.Validate(); err != nil {
				return nil, nil, fmt.Errorf("input %s: %w", info.Name, err)
			}
			data := t.Data
			if len(data) == 0 {
				data = []byte{0} // an empty tensor still needs a buffer
			}
			pinned.Pin(&data[0])
			shape := cShape(t.Shape)
			if err := cError(C.ob_host_tensor(b.host, unsafe.Pointer(&data[0]), C.size_t(len(t.Data)), shapePtr(shape), C.size_t(len(shape)), C.int(t.DType), &v)); err != nil {
				return nil, nil, fmt.Errorf("input %s: %w", info.Name, err)
			}
			hostValues = append(hostValues, v)
		}
		if err := bindName(info.Name, func(n *C.char) *C.char { return C.ob_bind_input(io, n, v) }); err != nil {
			return nil, nil, fmt.Errorf("binding input %s: %w", info.Name, err)
		}
	}
	for i, info := range s.outputs {
		mem := b.host
		if keep[i] {
			mem = b.dev
		}
		if err := bindName(info.Name, func(n *C.char) *C.char { return C.ob_bind_output_to(io, n, mem) }); err != nil {
			return nil, nil, fmt.Errorf("binding output %s: %w", info.Name, err)
		}
	}
	if err := cError(C.ob_run(b.sess, io)); err != nil {
		return nil, nil, err
	}
	values := make([]*C.OrtValue, len(s.outputs))
	if err := cError(C.ob_outputs(io, &values[0], C.size_t(len(values)))); err != nil {
		return nil, nil, err
	}

	host := make([]Tensor, len(values))
	dev := make([]*DeviceTensor, len(values))
	fail := func(err error) ([]Tensor, []*DeviceTensor, error) {
		for i, v := range values {
			if dev[i] != nil {
				dev[i].Release()
			} else if v != nil {
				C.ob_release_value(v)
			}
		}
		return nil, nil, err
	}
	for i, v := range values {
		if keep[i] {
			d, err := newDeviceTensor(v, b)
			if err != nil {
				values[i] = nil // released by newDeviceTensor
				return fail(fmt.Errorf("output %s: %w", s.outputs[i].Name, err))
			}
			dev[i] = d
			continue
		}
		dt, shape, data, err := tensorInfo(v)
		if err != nil {
			return fail(fmt.Errorf("output %s: %w", s.outputs[i].Name, err))
		}
		n := outputBytes(dt, shape)
		host[i] = Tensor{DType: dt, Shape: shape, Data: C.GoBytes(data, C.int(n))}
	}
	for i, v := range values {
		if !keep[i] {
			C.ob_release_value(v)
		}
	}
	return host, dev, nil
}

func bindName(name string, bind func(*C.char) *C.char) error {
	n := C.CString(name)
	defer C.free(unsafe.Pointer(n))
	return cError(bind(n))
}
