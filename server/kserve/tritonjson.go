package kserve

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// AppendTritonJSON writes a message of Triton's protocol as Triton's HTTP
// endpoints write it: the .proto's own field names, every scalar, list and
// map field even when empty, message fields only when set, enums by name,
// and 64-bit integers as JSON numbers. (protojson would quote 64-bit
// integers and name fields in lowerCamelCase; Triton writes its model
// configuration with protobuf's preserve_proto_field_names and
// always_print_primitive_fields, then unquotes the integers, and builds its
// statistics and metadata by hand with the same names.)
//
// Deriving the HTTP answer from the same message as the gRPC answer keeps
// the two transports from disagreeing.
func AppendTritonJSON(out []byte, m protoreflect.Message) []byte {
	out = append(out, '{')
	fields := m.Descriptor().Fields()
	first := true
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.HasPresence() && !m.Has(fd) {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = strconv.AppendQuote(out, string(fd.Name()))
		out = append(out, ':')
		out = appendField(out, fd, m.Get(fd))
	}
	return append(out, '}')
}

func appendField(out []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	switch {
	case fd.IsList():
		l := v.List()
		out = append(out, '[')
		for i := 0; i < l.Len(); i++ {
			if i > 0 {
				out = append(out, ',')
			}
			out = appendValue(out, fd, l.Get(i))
		}
		return append(out, ']')
	case fd.IsMap():
		out = append(out, '{')
		first := true
		// Map order is random in Go; sorted keys make the output stable.
		keys := make([]protoreflect.MapKey, 0, v.Map().Len())
		v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
			keys = append(keys, k)
			return true
		})
		slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			if !first {
				out = append(out, ',')
			}
			first = false
			out = appendString(out, k.String())
			out = append(out, ':')
			out = appendValue(out, fd.MapValue(), v.Map().Get(k))
		}
		return append(out, '}')
	}
	return appendValue(out, fd, v)
}

func appendValue(out []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(out, v.Bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.AppendInt(out, v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(out, v.Uint(), 10)
	case protoreflect.FloatKind:
		return appendFloat(out, v.Float(), 32)
	case protoreflect.DoubleKind:
		return appendFloat(out, v.Float(), 64)
	case protoreflect.StringKind:
		return appendString(out, v.String())
	case protoreflect.BytesKind:
		return appendString(out, base64.StdEncoding.EncodeToString(v.Bytes()))
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendString(out, string(ev.Name()))
		}
		return strconv.AppendInt(out, int64(v.Enum()), 10)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return AppendTritonJSON(out, v.Message())
	}
	return append(out, "null"...)
}

func appendString(out []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(out, b...)
}
