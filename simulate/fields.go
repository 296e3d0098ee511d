package simulate

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// checkUnknownFields reports the first field of data (in sorted order, so
// the answer is stable) that Scenario does not have, by its full path:
// json.Decoder's DisallowUnknownFields names the field but not where it is.
// Data that is not JSON passes here and fails in the decoder.
func checkUnknownFields(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil
	}
	return walkFields(v, reflect.TypeFor[Scenario](), "scenario", 0)
}

func walkFields(v any, t reflect.Type, path string, depth int) error {
	if depth > 32 {
		return fmt.Errorf("%w: %s: nested too deeply", ErrInvalidScenario, path)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[Duration]() {
		// Duration's own error cannot know its path.
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%w: %s: want a duration string such as \"90s\", got %s", ErrInvalidScenario, path, jsonKind(v))
		}
		if _, err := time.ParseDuration(str); err != nil {
			return fmt.Errorf("%w: %s: want a duration string such as \"90s\", got %q", ErrInvalidScenario, path, truncate(str, 40))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil // a type error, which the decoder names
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("%w: %s.%s: unknown field", ErrInvalidScenario, path, truncate(k, 64))
			}
			if err := walkFields(obj[k], ft, path+"."+k, depth+1); err != nil {
				return err
			}
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return nil
		}
		for i, e := range arr {
			if err := walkFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of t's exported fields to their types.
// Keys must match exactly: encoding/json would also accept other cases,
// which a scenario file has no reason to use.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField()*2)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			n, _, _ := strings.Cut(tag, ",")
			if n == "-" {
				continue
			}
			if n != "" {
				name = n
			}
		}
		m[name] = f.Type
	}
	return m
}

// jsonKind names the JSON type of a decoded value, for errors.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}
