package envoy

import (
	"errors"
	"unicode/utf8"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/keygate/keygate/authz"
)

// errWire is the error of an encoded CheckRequest that the wire decoder
// cannot read; proto.Unmarshal refuses every such message too.
var errWire = errors.New("envoy: malformed CheckRequest")

// Field numbers of the parts of a CheckRequest that RequestFromCheck reads.
const (
	fieldAttributes        = 1  // CheckRequest.attributes
	fieldRequest           = 4  // AttributeContext.request
	fieldContextExtensions = 10 // AttributeContext.context_extensions
	fieldHTTP              = 2  // AttributeContext.Request.http
	fieldHeaders           = 3  // HttpRequest.headers
	fieldHeaderMap         = 13 // HttpRequest.header_map
	fieldHeaderMapHeaders  = 1  // HeaderMap.headers
	fieldKey               = 1  // HeaderValue.key, and the key of a map entry
	fieldValue             = 2  // HeaderValue.value, and the value of a map entry
	fieldRawValue          = 3  // HeaderValue.raw_value
)

// wireRequest is a CheckRequest decoded by walking its wire format for only
// the parts RequestFromCheck reads: the key headers of
// attributes.request.http.headers, header_map, and
// attributes.context_extensions. Everything else is skipped unread. Its memory is reused from one request to the next, and its
// strings point into the encoded message, which must outlive its use.
//
// Decoding follows proto.Unmarshal where it matters: a repeated message
// field is merged, a later map entry or scalar replaces an earlier one, a
// field of an unexpected wire type is an unknown field, and a string that is
// not UTF-8 is an error. A message proto.Unmarshal accepts decodes to the
// same Request (FuzzWireRequest checks this); one it refuses is refused too,
// unless the fault lies in a part that is skipped.
type wireRequest struct {
	msg       authv3.CheckRequest
	attrs     authv3.AttributeContext
	request   authv3.AttributeContext_Request
	http      authv3.AttributeContext_HttpRequest
	headerMap corev3.HeaderMap
	values    []*corev3.HeaderValue // reused entries of headerMap.Headers
}

func newWireRequest() *wireRequest {
	w := new(wireRequest)
	w.http.Headers = make(map[string]string, 16)
	w.attrs.ContextExtensions = make(map[string]string, 4)
	return w
}

// decode fills w.msg from the encoded CheckRequest b and returns it.
func (w *wireRequest) decode(b []byte) (*authv3.CheckRequest, error) {
	w.reset()
	err := eachField(b, func(num protowire.Number, v []byte) error {
		if num == fieldAttributes {
			return w.attributes(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &w.msg, nil
}

// reset empties w, keeping its memory, and drops every pointer into the
// last message.
func (w *wireRequest) reset() {
	clear(w.http.Headers)
	clear(w.attrs.ContextExtensions)
	for _, v := range w.headerMap.Headers {
		v.Key, v.Value, v.RawValue = "", "", nil
	}
	w.headerMap.Headers = w.headerMap.Headers[:0]
	w.msg.Attributes = &w.attrs
	w.attrs.Request = &w.request
	w.request.Http = &w.http
	w.http.HeaderMap = &w.headerMap
}

func (w *wireRequest) attributes(b []byte) error {
	return eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fieldRequest:
			return eachField(v, func(num protowire.Number, v []byte) error {
				if num == fieldHTTP {
					return w.httpRequest(v)
				}
				return nil
			})
		case fieldContextExtensions:
			return mapEntry(v, w.attrs.ContextExtensions)
		}
		return nil
	})
}

// httpRequest reads an HttpRequest, which holds most of a CheckRequest's
// bytes: its loop is written out rather than handed to eachField.
func (w *wireRequest) httpRequest(b []byte) error {
	for len(b) > 0 {
		num, ok, v, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case !ok:
		case num == fieldHeaders:
			err = headerEntry(v, w.http.Headers)
		case num == fieldHeaderMap:
			err = eachField(v, func(num protowire.Number, v []byte) error {
				if num == fieldHeaderMapHeaders {
					return w.headerValue(v)
				}
				return nil
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *wireRequest) headerValue(b []byte) error {
	n := len(w.headerMap.Headers)
	if n == len(w.values) {
		w.values = append(w.values, new(corev3.HeaderValue))
	}
	hv := w.values[n]
	w.headerMap.Headers = append(w.headerMap.Headers, hv)
	return eachField(b, func(num protowire.Number, v []byte) (err error) {
		switch num {
		case fieldKey:
			hv.Key, err = utf8String(v)
		case fieldValue:
			hv.Value, err = utf8String(v)
		case fieldRawValue:
			hv.RawValue = v
		}
		return err
	})
}

// headerEntry reads an entry of HttpRequest.headers into m if its key names
// a key header, the only ones RequestFromCheck looks up there. The
// value of another header is not read, nor checked for UTF-8.
func headerEntry(b []byte, m map[string]string) error {
	key, value, ok := plainEntry(b)
	if !ok {
		var err error
		if key, value, err = entry(b); err != nil {
			return err
		}
	}
	if _, wanted := authz.SourceOf(unsafeString(key)); !wanted {
		return nil
	}
	if !utf8.Valid(value) {
		return errWire
	}
	m[unsafeString(key)] = unsafeString(value)
	return nil
}

// mapEntry reads a map<string, string> entry into m.
func mapEntry(b []byte, m map[string]string) error {
	key, value, err := entry(b)
	if err != nil {
		return err
	}
	k, err := utf8String(key)
	if err != nil {
		return err
	}
	v, err := utf8String(value)
	if err != nil {
		return err
	}
	m[k] = v
	return nil
}

// plainEntry splits a map entry written the way encoders write one: the
// key field, then the value field, once each. ok is false for any other
// form, which entry reads.
func plainEntry(b []byte) (key, value []byte, ok bool) {
	const keyTag, valueTag = fieldKey<<3 | byte(protowire.BytesType), fieldValue<<3 | byte(protowire.BytesType)
	if len(b) == 0 || b[0] != keyTag {
		return nil, nil, false
	}
	key, n := protowire.ConsumeBytes(b[1:])
	if n < 0 {
		return nil, nil, false
	}
	if b = b[1+n:]; len(b) == 0 {
		return key, nil, true
	}
	if b[0] != valueTag {
		return nil, nil, false
	}
	value, n = protowire.ConsumeBytes(b[1:])
	return key, value, n == len(b)-1
}

// entry reads the key and value of a map entry: the last of each, empty
// when absent. A key or value that a later one replaces must be UTF-8, as
// proto.Unmarshal checks each; the caller checks the last ones it reads.
func entry(b []byte) (key, value []byte, err error) {
	err = eachField(b, func(num protowire.Number, v []byte) error {
		var replaced []byte
		switch num {
		case fieldKey:
			replaced, key = key, v
		case fieldValue:
			replaced, value = value, v
		}
		if !utf8.Valid(replaced) {
			return errWire
		}
		return nil
	})
	return key, value, err
}

// eachField calls fn with the number and contents of every length-delimited
// field of b, in order, and returns the first error of b's framing or of fn.
// Fields of other wire types are skipped, as proto.Unmarshal keeps a known
// field of an unexpected type as an unknown one.
func eachField(b []byte, fn func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, ok, v, rest, err := nextField(b)
		if err != nil {
			return err
		}
		if ok {
			if err := fn(num, v); err != nil {
				return err
			}
		}
		b = rest
	}
	return nil
}

// nextField reads the field at the start of b. ok says whether it is
// length-delimited, v is then its contents; rest is what follows the field.
func nextField(b []byte) (num protowire.Number, ok bool, v, rest []byte, err error) {
	// Most fields of a CheckRequest are length-delimited with a tag and a
	// length of one byte each.
	if len(b) >= 2 && b[0] < 0x80 && b[1] < 0x80 && protowire.Type(b[0]&7) == protowire.BytesType && b[0]>>3 != 0 {
		n := 2 + int(b[1])
		if n > len(b) {
			return 0, false, nil, nil, errWire
		}
		return protowire.Number(b[0] >> 3), true, b[2:n:n], b[n:], nil
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num > protowire.MaxValidNumber {
		return 0, false, nil, nil, errWire
	}
	b = b[n:]
	if typ == protowire.BytesType {
		v, n = protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, false, nil, nil, errWire
		}
		return num, true, v[:len(v):len(v)], b[n:], nil
	}
	n = protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, false, nil, nil, errWire
	}
	return num, false, nil, b[n:], nil
}

// utf8String returns b as a string that shares its memory, if b is UTF-8,
// as proto3 requires of strings.
func utf8String(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", errWire
	}
	return unsafeString(b), nil
}

// unsafeString returns b as a string that shares its memory.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
