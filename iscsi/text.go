package iscsi

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// keyValue is one text key and its value, in the order received.
type keyValue struct {
	Key, Value string
}

// Limits from RFC 7143 section 6.1.
const (
	maxKeyLen   = 63
	maxValueLen = 8192
	// maxTextLen bounds a whole (possibly continued) text or login request.
	maxTextLen = 64 << 10
)

// parseText splits a text data segment ("key=value\0key=value\0") into its
// pairs. A final pair without the terminating NUL is accepted. Empty
// segments between NULs (padding) are skipped. A pair without '=', an empty
// or over-long key or value, or a key given twice is an error.
func parseText(data []byte) ([]keyValue, error) {
	var out []keyValue
	seen := make(map[string]bool)
	for len(data) > 0 {
		var item []byte
		if i := bytes.IndexByte(data, 0); i >= 0 {
			item, data = data[:i], data[i+1:]
		} else {
			item, data = data, nil
		}
		if len(item) == 0 {
			continue
		}
		eq := bytes.IndexByte(item, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%w: text item %q has no '='", errProtocol, truncate(item))
		}
		k, v := string(item[:eq]), string(item[eq+1:])
		if k == "" || len(k) > maxKeyLen || !validKey(k) {
			return nil, fmt.Errorf("%w: bad key %q", errProtocol, truncate(item[:eq]))
		}
		if len(v) > maxValueLen {
			return nil, fmt.Errorf("%w: value of %s too long", errProtocol, k)
		}
		if seen[k] {
			return nil, fmt.Errorf("%w: key %s repeated", errProtocol, k)
		}
		seen[k] = true
		out = append(out, keyValue{k, v})
	}
	return out, nil
}

func validKey(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == '@' || c == '_') {
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
}

// encodeText appends the pairs in wire form.
func encodeText(dst []byte, kvs []keyValue) []byte {
	for _, kv := range kvs {
		dst = append(dst, kv.Key...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
		dst = append(dst, 0)
	}
	return dst
}

// parseNumber parses a numerical value: decimal, or hex with 0x.
func parseNumber(v string) (uint64, error) {
	if v == "" {
		return 0, fmt.Errorf("%w: empty number", errProtocol)
	}
	var n uint64
	var err error
	if strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X") {
		n, err = strconv.ParseUint(v[2:], 16, 64)
	} else {
		n, err = strconv.ParseUint(v, 10, 64)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: bad number %q", errProtocol, v)
	}
	return n, nil
}
