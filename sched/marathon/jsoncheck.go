package marathon

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

var (
	rawMessageType  = reflect.TypeOf(json.RawMessage(nil))
	envValueType    = reflect.TypeOf(api.EnvValue{})
	unreachableType = reflect.TypeOf(api.UnreachableStrategy{})
	anyType         = reflect.TypeOf((*any)(nil)).Elem()
)

// checkTypes walks a decoded JSON value (numbers as json.Number) against
// the Go type it will be decoded into and reports every mismatch the way
// Marathon's Play JSON reads do: the JSON path ("/healthChecks(0)/portIndex")
// and the error key ("error.expected.jsnumber"). null is accepted
// everywhere: it keeps the default.
func checkTypes(v any, t reflect.Type, path string, out *[]api.ErrorDetail) {
	if v == nil {
		return
	}
	add := func(key string) {
		p := path
		if p == "" {
			p = "/"
		}
		*out = append(*out, api.ErrorDetail{Path: p, Errors: []string{key}})
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case rawMessageType, anyType:
		return
	case envValueType:
		switch x := v.(type) {
		case string:
		case map[string]any:
			if s, ok := x["secret"]; ok && s != nil {
				if _, ok := s.(string); !ok {
					*out = append(*out, api.ErrorDetail{Path: path + "/secret", Errors: []string{"error.expected.jsstring"}})
				}
			}
		default:
			add("error.expected.jsstring")
		}
		return
	case unreachableType:
		switch x := v.(type) {
		case string:
			if x != "disabled" {
				add(`error.expected.jsobject or "disabled"`)
			}
		case map[string]any:
			for _, k := range []string{"inactiveAfterSeconds", "expungeAfterSeconds"} {
				if e, ok := x[k]; ok && e != nil {
					if _, ok := e.(json.Number); !ok {
						*out = append(*out, api.ErrorDetail{Path: path + "/" + k, Errors: []string{"error.expected.jsnumber"}})
					}
				}
			}
		default:
			add("error.expected.jsobject")
		}
		return
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			add("error.expected.jsstring")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			add("error.expected.jsboolean")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			add("error.expected.jsnumber")
			return
		}
		if _, err := strconv.ParseInt(n.String(), 10, 64); err != nil {
			if f, err := n.Float64(); err != nil || f != float64(int64(f)) {
				add("error.expected.int")
			}
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			add("error.expected.jsnumber")
		}
	case reflect.Slice, reflect.Array:
		a, ok := v.([]any)
		if !ok {
			add("error.expected.jsarray")
			return
		}
		for i, e := range a {
			checkTypes(e, t.Elem(), path+"("+strconv.Itoa(i)+")", out)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			add("error.expected.jsobject")
			return
		}
		for _, k := range sortedKeys(m) {
			checkTypes(m[k], t.Elem(), path+"/"+k, out)
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			add("error.expected.jsobject")
			return
		}
		checkStruct(m, t, path, out)
	}
}

func checkStruct(m map[string]any, t reflect.Type, path string, out *[]api.ErrorDetail) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			checkStruct(m, f.Type, path, out)
			continue
		}
		name := f.Name
		if tag := f.Tag.Get("json"); tag != "" {
			if tag == "-" {
				continue
			}
			if n := strings.Split(tag, ",")[0]; n != "" {
				name = n
			}
		}
		if val, ok := m[name]; ok {
			checkTypes(val, f.Type, path+"/"+name, out)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}
