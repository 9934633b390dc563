package inference

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// PyTorch exports bilinear upsampling (F.interpolate(size=...), as in
// U²-Net and ISNet) as Resize nodes whose output size is computed at run
// time from another tensor's shape, with coordinate_transformation_mode
// "pytorch_half_pixel". ONNX Runtime's CPU layout optimiser (NCHWc) only
// takes a Resize with constant integer scales and "half_pixel", so every
// such node leaves the blocked layout: a reorder in, a plain resize, a
// reorder out, and the Concat after it in the plain layout too. On u2netp
// that is 11% of a run (bench/README.md, "Resize rewrite").
//
// For a model whose inputs have fixed shapes the sizes are constants in
// effect, and ONNX Runtime's own shape inference, which folds the shape
// arithmetic at load, knows them. RewriteResizes reads them from a probe
// session (no run needed) and gives each node whose sizes are whole
// multiples of its input the equivalent constant scales. "half_pixel" and
// "pytorch_half_pixel" differ only for an output length of 1, which the
// rewrite never touches, so the model computes the same function; outputs
// move by float rounding in ONNX Runtime's blocked kernels (u2netp: at
// most 7e-6).

// Field numbers from onnx.proto, beyond batchdim.go's.
const (
	graphNode      = 1
	nodeInput      = 1
	nodeOutput     = 2
	nodeOpType     = 4
	nodeAttribute  = 5
	nodeDomain     = 7
	attrName       = 1
	attrI          = 3
	attrS          = 4
	attrG          = 6
	attrGraphs     = 11
	tensorDims     = 1
	tensorDataType = 2
	tensorRawData  = 9
)

const (
	onnxFloat = 1 // TensorProto.DataType FLOAT
	// resizeNamespace prefixes the names of the constants the rewrite adds.
	resizeNamespace = "imgserve.resize."
)

// resizeEdit is one Resize node (by its position among the graph's nodes)
// and the constant scales that replace its sizes input.
type resizeEdit struct {
	node   int
	scales [4]float32
}

type onnxNode struct {
	inputs, outputs []string
	opType, domain  string
	strAttrs        map[string]string
	intAttrs        map[string]int64
	attrNames       []string
	subgraph        bool
}

// RewriteResizes returns the model with its run-time-sized Resize nodes
// given constant scales where that is exact, and how many it rewrote. The
// model comes back unchanged, with the reason in note, when the rewrite
// does not apply; a model ONNX Runtime cannot read at all comes back
// unchanged too, for NewSession to report. Only CPU sessions gain from
// it, so a CUDA runtime returns the model as it is.
func (r *Runtime) RewriteResizes(model []byte, dir string) (out []byte, rewritten int, note string) {
	if r.device.CUDA {
		return model, 0, ""
	}
	graph, err := modelGraphBytes(model)
	if err != nil {
		return model, 0, err.Error()
	}
	nodes := parseNodes(graph)
	edits, err := r.planResizes(model, graph, nodes, dir)
	if err != nil {
		return model, 0, err.Error()
	}
	if len(edits) == 0 {
		return model, 0, ""
	}
	if out, err = applyResizeEdits(model, graph, nodes, edits); err != nil {
		return model, 0, err.Error()
	}
	return out, len(edits), ""
}

// planResizes finds the candidate nodes and learns the shapes around them
// from a probe: the model with each candidate's input and output declared
// as graph outputs, whose shapes ONNX Runtime infers when it loads it.
func (r *Runtime) planResizes(model, graph []byte, nodes []onnxNode, dir string) ([]resizeEdit, error) {
	var cand []int
	subgraphs := false
	for i, n := range nodes {
		subgraphs = subgraphs || n.subgraph
		if resizeCandidate(n) {
			cand = append(cand, i)
		}
	}
	if len(cand) == 0 {
		return nil, nil
	}
	if subgraphs {
		// Nodes inside a subgraph may use outer names that liveNodes
		// cannot see.
		return nil, errors.New("the graph has subgraphs")
	}
	declared := map[string]bool{}
	for _, name := range graphOutputNames(graph) {
		declared[name] = true
	}
	var probeOutputs []byte
	for _, i := range cand {
		for _, name := range []string{nodes[i].inputs[0], nodes[i].outputs[0]} {
			if !declared[name] {
				declared[name] = true
				probeOutputs = appendMessage(probeOutputs, graphOutput, namedOutput(name))
			}
		}
	}
	probe, err := replaceGraph(model, slices.Concat(graph, probeOutputs))
	if err != nil {
		return nil, err
	}
	_, outputs, err := r.signature(probe, dir, nil)
	if err != nil {
		return nil, fmt.Errorf("probing the Resize nodes' shapes: %w", err)
	}
	shapes := map[string][]int64{}
	for _, o := range outputs {
		shapes[o.Name] = o.Shape
	}
	var edits []resizeEdit
	for _, i := range cand {
		if scales, ok := exactScales(shapes[nodes[i].inputs[0]], shapes[nodes[i].outputs[0]]); ok {
			edits = append(edits, resizeEdit{node: i, scales: scales})
		}
	}
	if len(edits) == 0 {
		return nil, errors.New("no Resize node has an output a whole multiple of its input, with both shapes known at load (inputs of dynamic shape leave them unknown)")
	}
	return edits, nil
}

// resizeCandidate: a Resize with a run-time sizes input, bilinear, with the
// coordinate mapping PyTorch exports, and no attribute newer opsets added.
func resizeCandidate(n onnxNode) bool {
	if n.opType != "Resize" || (n.domain != "" && n.domain != "ai.onnx") || len(n.inputs) != 4 || n.inputs[3] == "" {
		return false
	}
	for _, a := range n.attrNames {
		switch a {
		case "mode", "coordinate_transformation_mode", "cubic_coeff_a", "nearest_mode", "extrapolation_value":
		case "exclude_outside":
			if n.intAttrs[a] != 0 {
				return false
			}
		default:
			return false
		}
	}
	ctm := n.strAttrs["coordinate_transformation_mode"]
	return n.strAttrs["mode"] == "linear" && (ctm == "half_pixel" || ctm == "pytorch_half_pixel")
}

// exactScales: an output a whole multiple of the input along the two
// spatial axes, every output length above 1, batch and channels kept;
// unknown (-1) dimensions never qualify.
func exactScales(in, out []int64) ([4]float32, bool) {
	var s [4]float32
	if len(in) != 4 || len(out) != 4 || slices.Contains(in, -1) || in[0] != out[0] || in[1] != out[1] {
		return s, false
	}
	s[0], s[1] = 1, 1
	for d := 2; d < 4; d++ {
		if in[d] <= 0 || out[d] <= 1 || out[d]%in[d] != 0 || out[d]/in[d] > 1<<20 {
			return s, false
		}
		s[d] = float32(out[d] / in[d])
	}
	return s, true
}

// applyResizeEdits gives each edited node the inputs (X, empty roi, scales)
// and "half_pixel", adds those constants, and drops every node that no
// longer reaches a graph output: the sizes arithmetic, and any node the
// export left dead.
func applyResizeEdits(model, graph []byte, nodes []onnxNode, edits []resizeEdit) ([]byte, error) {
	const roi = resizeNamespace + "roi"
	rewired := map[int]bool{}
	var inits []byte
	made := map[string]bool{}
	for _, e := range edits {
		name := fmt.Sprintf("%sscales.%gx%g", resizeNamespace, e.scales[2], e.scales[3])
		rewired[e.node] = true
		nodes[e.node].inputs = []string{nodes[e.node].inputs[0], roi, name}
		if !made[name] {
			made[name] = true
			inits = appendMessage(inits, graphInitializer, floatTensor(name, e.scales[:]))
		}
	}
	inits = appendMessage(inits, graphInitializer, floatTensor(roi, nil))
	live := liveNodes(graph, nodes)

	index := -1
	edited, err := rewrite(graph, func(num protowire.Number, v []byte) ([]byte, bool, error) {
		if num != graphNode {
			return v, true, nil
		}
		index++
		if !live[index] {
			return nil, false, nil
		}
		if !rewired[index] {
			return v, true, nil
		}
		return editResizeNode(v, nodes[index].inputs)
	})
	if err != nil {
		return nil, err
	}
	return replaceGraph(model, append(edited, inits...))
}

// editResizeNode replaces a node's inputs and sets its coordinate mapping
// to "half_pixel", copying every other field.
func editResizeNode(node []byte, inputs []string) ([]byte, bool, error) {
	var out []byte
	for _, in := range inputs {
		out = protowire.AppendTag(out, nodeInput, protowire.BytesType)
		out = protowire.AppendString(out, in)
	}
	rest, err := rewrite(node, func(num protowire.Number, v []byte) ([]byte, bool, error) {
		switch {
		case num == nodeInput:
			return nil, false, nil
		case num == nodeAttribute && stringField(v, attrName) == "coordinate_transformation_mode":
			a, err := rewrite(v, func(num protowire.Number, v []byte) ([]byte, bool, error) {
				if num == attrS {
					return []byte("half_pixel"), true, nil
				}
				return v, true, nil
			})
			return a, true, err
		}
		return v, true, nil
	})
	if err != nil {
		return nil, false, err
	}
	return append(out, rest...), true, nil
}

// liveNodes marks the nodes that contribute to a graph output, walking
// back from the outputs.
func liveNodes(graph []byte, nodes []onnxNode) map[int]bool {
	producer := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.outputs {
			if o != "" {
				producer[o] = i
			}
		}
	}
	todo := graphOutputNames(graph)
	live := map[int]bool{}
	for len(todo) > 0 {
		name := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		i, ok := producer[name]
		if !ok || live[i] {
			continue
		}
		live[i] = true
		todo = append(todo, nodes[i].inputs...)
	}
	return live
}

func parseNodes(graph []byte) []onnxNode {
	var nodes []onnxNode
	forEachField(graph, func(num protowire.Number, v []byte) {
		if num != graphNode {
			return
		}
		n := onnxNode{strAttrs: map[string]string{}, intAttrs: map[string]int64{}}
		forEachField(v, func(num protowire.Number, v []byte) {
			switch num {
			case nodeInput:
				n.inputs = append(n.inputs, string(v))
			case nodeOutput:
				n.outputs = append(n.outputs, string(v))
			case nodeOpType:
				n.opType = string(v)
			case nodeDomain:
				n.domain = string(v)
			case nodeAttribute:
				name := stringField(v, attrName)
				n.attrNames = append(n.attrNames, name)
				forEachField(v, func(num protowire.Number, f []byte) {
					switch num {
					case attrS:
						n.strAttrs[name] = string(f)
					case attrG, attrGraphs:
						n.subgraph = true
					}
				})
				if _, i, ok := firstField(v, attrI, protowire.VarintType); ok {
					n.intAttrs[name] = int64(i)
				}
			}
		})
		nodes = append(nodes, n)
	})
	return nodes
}

// forEachField calls f with every length-delimited field of msg. It stops
// quietly at malformed bytes: the rewrite then finds nothing to do, or
// rewrite reports the error, and NewSession refuses the model with ONNX
// Runtime's own message.
func forEachField(msg []byte, f func(num protowire.Number, v []byte)) {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if m < 0 {
			return
		}
		if typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(msg[n:])
			f(num, v)
		}
		msg = msg[n+m:]
	}
}

func graphOutputNames(graph []byte) []string {
	var names []string
	forEachField(graph, func(num protowire.Number, v []byte) {
		if num == graphOutput {
			names = append(names, stringField(v, valueInfoName))
		}
	})
	return names
}

func modelGraphBytes(model []byte) ([]byte, error) {
	var graph []byte
	found := false
	forEachField(model, func(num protowire.Number, v []byte) {
		if num == modelGraph {
			graph, found = v, true
		}
	})
	if !found {
		return nil, fmt.Errorf("model has no graph")
	}
	return graph, nil
}

func replaceGraph(model, graph []byte) ([]byte, error) {
	return rewrite(model, func(num protowire.Number, v []byte) ([]byte, bool, error) {
		if num == modelGraph {
			return graph, true, nil
		}
		return v, true, nil
	})
}

func appendMessage(b []byte, field protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// floatTensor is a 1-D FLOAT TensorProto holding v.
func floatTensor(name string, v []float32) []byte {
	var t []byte
	t = protowire.AppendTag(t, tensorDims, protowire.VarintType)
	t = protowire.AppendVarint(t, uint64(len(v)))
	t = protowire.AppendTag(t, tensorDataType, protowire.VarintType)
	t = protowire.AppendVarint(t, onnxFloat)
	t = protowire.AppendTag(t, tensorProtoName, protowire.BytesType)
	t = protowire.AppendString(t, name)
	raw := make([]byte, 0, 4*len(v))
	for _, f := range v {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
	}
	t = protowire.AppendTag(t, tensorRawData, protowire.BytesType)
	return protowire.AppendBytes(t, raw)
}

// namedOutput declares a graph output by name alone; ONNX Runtime infers
// its type and shape.
func namedOutput(name string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, valueInfoName, protowire.BytesType), name)
}
