// Package kserve encodes and decodes the KServe v2 inference protocol: JSON
// tensors and Triton's binary-tensor extension.
package kserve

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unsafe"

	"github.com/x448/float16"

	"github.com/imgserve/imgserve/inference"
)

// The KServe v2 inference protocol, JSON with Triton's binary-tensor
// extension: the body is a JSON header of Inference-Header-Content-Length
// bytes, followed by the raw bytes of each input that declares
// binary_data_size, in order.

type Request struct {
	ID         string          `json:"id,omitempty"`
	Parameters Parameters      `json:"parameters,omitempty"`
	Inputs     []RequestInput  `json:"inputs"`
	Outputs    []RequestOutput `json:"outputs,omitempty"`
}

type Parameters map[string]any

func (p Parameters) Flag(name string) bool {
	v, _ := p[name].(bool)
	return v
}

func (p Parameters) Int(name string) (int64, bool) {
	v, ok := p[name].(float64)
	if !ok || v != math.Trunc(v) || v < 0 {
		return 0, false
	}
	return int64(v), true
}

type RequestInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters Parameters      `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

type RequestOutput struct {
	Name       string     `json:"name"`
	Parameters Parameters `json:"parameters,omitempty"`
}

type Response struct {
	ModelName    string           `json:"model_name"`
	ModelVersion string           `json:"model_version,omitempty"`
	ID           string           `json:"id,omitempty"`
	Outputs      []ResponseOutput `json:"outputs"`
}

type ResponseOutput struct {
	Name       string          `json:"name"`
	Datatype   string          `json:"datatype"`
	Shape      []int64         `json:"shape"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// ErrBadInput marks client mistakes in an infer request (HTTP 400).
var ErrBadInput = errors.New("bad request")

func BadInput(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadInput, fmt.Sprintf(format, args...))
}

// DecodeRequest splits the body, parses the JSON header and returns the
// tensors in the model's input order, checked against its signature and
// limits before anything is allocated for them. Binary tensors are views of
// body; JSON ones are parsed into new buffers, for which reserve (may be
// nil) is asked first, for no more than the bytes the JSON can hold.
func DecodeRequest(body []byte, headerLen int, lim inference.InputLimits, reserve func(n int64) error) (*Request, []inference.Tensor, error) {
	header, binaryPart := body, []byte(nil)
	if headerLen >= 0 {
		if headerLen > len(body) {
			return nil, nil, BadInput("Inference-Header-Content-Length %d exceeds the body of %d bytes", headerLen, len(body))
		}
		header, binaryPart = body[:headerLen], body[headerLen:]
	}
	var req Request
	if err := json.Unmarshal(header, &req); err != nil {
		return nil, nil, BadInput("malformed JSON: %v", err)
	}
	if err := checkID(req.ID); err != nil {
		return nil, nil, err
	}
	if len(req.Inputs) == 0 {
		return nil, nil, BadInput("no inputs")
	}
	inputs := NewInputs(lim)
	for _, in := range req.Inputs {
		err := inputs.Add(in.Name, in.Datatype, in.Shape, func(dt inference.DType, n int64) ([]byte, error) {
			size, ok := in.Parameters.Int("binary_data_size")
			if !ok {
				return parseJSONData(in.Data, dt, n, reserve)
			}
			if in.Data != nil {
				return nil, errors.New("both binary_data_size and data")
			}
			if want := n * int64(dt.Size()); size != want {
				return nil, fmt.Errorf("binary_data_size %d, shape %v of %s needs %d bytes", size, in.Shape, dt, want)
			}
			if size > int64(len(binaryPart)) {
				return nil, fmt.Errorf("binary_data_size %d exceeds the %d binary bytes left", size, len(binaryPart))
			}
			var data []byte
			data, binaryPart = binaryPart[:size], binaryPart[size:]
			return data, nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if len(binaryPart) != 0 {
		return nil, nil, BadInput("%d binary bytes after the last input", len(binaryPart))
	}
	tensors, err := inputs.Tensors()
	if err != nil {
		return nil, nil, err
	}
	for _, o := range req.Outputs {
		for key := range o.Parameters {
			if err := CheckOutputParameter(o.Name, key); err != nil {
				return nil, nil, err
			}
		}
	}
	return &req, tensors, nil
}

// RequestedOutputs names the outputs the request asks for, in its order.
func (r *Request) RequestedOutputs() []string {
	names := make([]string, len(r.Outputs))
	for i, o := range r.Outputs {
		names[i] = o.Name
	}
	return names
}

// Inputs checks a request's input tensors against a model's signature and
// limits, whatever transport carried them (JSON, binary, gRPC), and
// collects them in the model's order.
type Inputs struct {
	lim     inference.InputLimits
	sig     []inference.TensorInfo
	used    int64 // bytes of the inputs so far, for lim.MaxBytes
	tensors []inference.Tensor
	seen    []bool
}

// NewInputs starts collecting inputs for a model with these limits (its
// signature, batch size, dimension bounds and byte limit).
func NewInputs(lim inference.InputLimits) *Inputs {
	return &Inputs{lim: lim, sig: lim.Inputs,
		tensors: make([]inference.Tensor, len(lim.Inputs)), seen: make([]bool, len(lim.Inputs))}
}

// Add checks an input's name, datatype and shape against the model and its
// limits, with overflow-checked arithmetic, then asks data for its bytes,
// given its type and element count: nothing is allocated for a shape the
// model would refuse. Any error is a bad input that names the tensor,
// except a refused memory reservation, which passes as it is.
func (in *Inputs) Add(name, datatype string, shape []int64, data func(dt inference.DType, elements int64) ([]byte, error)) error {
	idx := slices.IndexFunc(in.sig, func(t inference.TensorInfo) bool { return t.Name == name })
	if idx < 0 {
		return BadInput("unknown input %q", name)
	}
	if in.seen[idx] {
		return BadInput("input %q given twice", name)
	}
	in.seen[idx] = true
	info := in.sig[idx]
	dt, ok := inference.ParseDType(datatype)
	if !ok {
		return BadInput("input %q: unsupported datatype %q", name, datatype)
	}
	if dt != info.DType {
		return BadInput("input %q: datatype %s, the model wants %s", name, datatype, info.DType)
	}
	want, err := in.lim.CheckShape(idx, dt, shape, in.used)
	if err != nil {
		return BadInput("input %q: %v", name, err)
	}
	in.used += want
	t := inference.Tensor{DType: dt, Shape: shape}
	b, err := data(dt, want/int64(dt.Size()))
	var refused *reserveError
	if errors.As(err, &refused) {
		return refused.err
	}
	if err != nil {
		return BadInput("input %q: %v", name, err)
	}
	if int64(len(b)) != want {
		return BadInput("input %q: %d bytes of data, shape %v of %s needs %d", name, len(b), shape, dt, want)
	}
	t.Data = b
	in.tensors[idx] = t
	return nil
}

// maxIDBytes bounds the request id echoed in the response.
const maxIDBytes = 256

// checkID refuses an id that is long or holds control characters: it is
// echoed back and may reach logs.
func checkID(id string) error {
	if len(id) > maxIDBytes {
		return BadInput("id is %d bytes; the limit is %d", len(id), maxIDBytes)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return BadInput("id holds a control character")
		}
	}
	return nil
}

// Reserved asks reserve for n bytes before data allocates them; a refusal
// passes through Add as it is, not as a bad input. For transports whose
// data callbacks allocate (gRPC's typed contents).
func Reserved(reserve func(int64) error, n int64) error {
	if reserve == nil {
		return nil
	}
	if err := reserve(n); err != nil {
		return &reserveError{err}
	}
	return nil
}

// reserveError is a refused memory reservation: the server's limit, not
// the client's mistake.
type reserveError struct{ err error }

func (e *reserveError) Error() string { return e.err.Error() }

// Tensors returns the inputs in the model's order, once every one was given.
func (in *Inputs) Tensors() ([]inference.Tensor, error) {
	for i, ok := range in.seen {
		if !ok {
			return nil, BadInput("missing input %q", in.sig[i].Name)
		}
	}
	return in.tensors, nil
}

// SelectOutputs finds the requested outputs among the model's; none
// requested means all of them, in the model's order.
func SelectOutputs(model, requested []string) ([]int, error) {
	if len(requested) == 0 {
		all := make([]int, len(model))
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	idx := make([]int, len(requested))
	for i, name := range requested {
		idx[i] = slices.Index(model, name)
		if idx[i] < 0 {
			return nil, BadInput("unknown output %q", name)
		}
	}
	return idx, nil
}

// CheckOutputParameter refuses the parameters of extensions that are not
// served: answering raw tensors to a client that asked for class labels
// would be wrong without an error.
func CheckOutputParameter(output, key string) error {
	if key == "classification" {
		return BadInput("output %q: the classification extension is not supported", output)
	}
	return nil
}

// CheckVersion accepts the one version every model has, "1", or none.
func CheckVersion(model, version string) error {
	if version == "" || version == "1" {
		return nil
	}
	return NotFoundError("model " + model + " has only version 1")
}

// NotFoundError is a model or version that does not exist.
type NotFoundError string

func (e NotFoundError) Error() string { return string(e) }

// parseJSONData reads a JSON array, flat or nested in row-major order, of
// exactly n elements. It scans the bytes itself: decoding hundreds of
// thousands of numbers through []any is far slower and allocates each one.
//
// Its buffer is sized from the bytes at hand, never from the shape alone:
// every element takes at least two bytes of JSON (a digit and a comma), so
// a tiny body declaring a huge shape allocates next to nothing before its
// count is found wrong.
func parseJSONData(raw json.RawMessage, dt inference.DType, n int64, reserve func(int64) error) ([]byte, error) {
	if len(raw) == 0 {
		return nil, errors.New("no data and no binary_data_size")
	}
	size := min(n, int64(len(raw)+1)/2) * int64(dt.Size())
	if err := Reserved(reserve, size); err != nil {
		return nil, err
	}
	out := make([]byte, 0, size)
	count := int64(0)
	depth := 0
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '[':
			depth++
			i++
		case c == ']':
			depth--
			if depth < 0 {
				return nil, errors.New("unbalanced ] in data")
			}
			i++
		case c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r':
			i++
		default:
			if depth == 0 {
				return nil, errors.New("data must be a JSON array")
			}
			j := i
			for j < len(raw) && raw[j] != ',' && raw[j] != ']' && raw[j] != ' ' && raw[j] != '\n' && raw[j] != '\t' && raw[j] != '\r' {
				j++
			}
			if count == n {
				return nil, fmt.Errorf("data has more than the %d elements of its shape", n)
			}
			var err error
			out, err = appendElement(out, dt, raw[i:j])
			if err != nil {
				return nil, fmt.Errorf("element %d: %v", count, err)
			}
			count++
			i = j
		}
	}
	if depth != 0 {
		return nil, errors.New("unbalanced [ in data")
	}
	if count != n {
		return nil, fmt.Errorf("data has %d elements, its shape needs %d", count, n)
	}
	return out, nil
}

func appendElement(out []byte, dt inference.DType, tok []byte) ([]byte, error) {
	// The strconv parsers keep nothing of their argument, so a view of the
	// token saves an allocation per element.
	s := unsafe.String(unsafe.SliceData(tok), len(tok))
	switch dt {
	case inference.BOOL:
		switch s {
		case "true":
			return append(out, 1), nil
		case "false":
			return append(out, 0), nil
		}
		return nil, fmt.Errorf("%q is not a boolean", string(tok))
	case inference.FP32, inference.FP16, inference.FP64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		switch dt {
		case inference.FP32:
			return binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(f))), nil
		case inference.FP16:
			return binary.LittleEndian.AppendUint16(out, uint16(float16.Fromfloat32(float32(f)))), nil
		}
		return binary.LittleEndian.AppendUint64(out, math.Float64bits(f)), nil
	}
	size := dt.Size()
	if isUnsigned(dt) {
		v, err := strconv.ParseUint(s, 10, size*8)
		if err != nil {
			return nil, fmt.Errorf("%q is not a %s", s, dt)
		}
		return appendInt(out, v, size), nil
	}
	v, err := strconv.ParseInt(s, 10, size*8)
	if err != nil {
		return nil, fmt.Errorf("%q is not a %s", s, dt)
	}
	return appendInt(out, uint64(v), size), nil
}

func isUnsigned(dt inference.DType) bool {
	return dt == inference.UINT8 || dt == inference.UINT16 || dt == inference.UINT32 || dt == inference.UINT64
}

func appendInt(out []byte, v uint64, size int) []byte {
	for i := 0; i < size; i++ {
		out = append(out, byte(v>>(8*i)))
	}
	return out
}

// AppendJSONData writes a tensor's elements as a flat JSON array.
func AppendJSONData(out []byte, t inference.Tensor) []byte {
	out = append(out, '[')
	size := t.DType.Size()
	n := len(t.Data) / size
	for i := 0; i < n; i++ {
		if i > 0 {
			out = append(out, ',')
		}
		b := t.Data[i*size : (i+1)*size]
		switch t.DType {
		case inference.FP32:
			out = appendFloat(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), 32)
		case inference.FP16:
			out = appendFloat(out, float64(float16.Frombits(binary.LittleEndian.Uint16(b)).Float32()), 32)
		case inference.FP64:
			out = appendFloat(out, math.Float64frombits(binary.LittleEndian.Uint64(b)), 64)
		case inference.BOOL:
			out = strconv.AppendBool(out, b[0] != 0)
		default:
			var v uint64
			for k := size - 1; k >= 0; k-- {
				v = v<<8 | uint64(b[k])
			}
			if isUnsigned(t.DType) {
				out = strconv.AppendUint(out, v, 10)
			} else {
				shift := 64 - 8*size
				out = strconv.AppendInt(out, int64(v<<shift)>>shift, 10)
			}
		}
	}
	return append(out, ']')
}

// appendFloat writes JSON numbers; JSON has no NaN or infinity, so those
// become null, as Triton does.
func appendFloat(out []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(out, "null"...)
	}
	return strconv.AppendFloat(out, f, 'g', -1, bits)
}

// EncodeResponse builds the response body for the selected outputs (from
// SelectOutputs). It returns the length of the JSON header when any output
// is sent as binary, else -1.
func EncodeResponse(model string, req *Request, names []string, selected []int, outs []inference.Tensor) ([]byte, int, error) {
	defaultBinary := req.Parameters.Flag("binary_data_output")
	resp := Response{ModelName: model, ModelVersion: "1", ID: req.ID}
	var blobs [][]byte
	for i, idx := range selected {
		t := outs[idx]
		ro := ResponseOutput{Name: names[idx], Datatype: t.DType.String(), Shape: t.Shape}
		binaryOut := defaultBinary
		if i < len(req.Outputs) {
			if v, ok := req.Outputs[i].Parameters["binary_data"].(bool); ok {
				binaryOut = v
			}
		}
		if binaryOut {
			ro.Parameters = map[string]any{"binary_data_size": len(t.Data)}
			blobs = append(blobs, t.Data)
		} else {
			ro.Data = AppendJSONData(nil, t)
		}
		resp.Outputs = append(resp.Outputs, ro)
	}
	header, err := json.Marshal(resp)
	if err != nil {
		return nil, 0, err
	}
	if len(blobs) == 0 {
		return header, -1, nil
	}
	size := len(header)
	for _, b := range blobs {
		size += len(b)
	}
	body := append(make([]byte, 0, size), header...)
	for _, b := range blobs {
		body = append(body, b...)
	}
	return body, len(header), nil
}
