package envoy

import "github.com/keygate/keygate/authz"

// WireRequest decodes an encoded CheckRequest as the wire path does.
func WireRequest(b []byte) (authz.Request, error) {
	c := getCall()
	defer c.release()
	if err := c.decode(b); err != nil {
		return authz.Request{}, err
	}
	req := c.req
	// Copy the strings out: they point into b, and c is about to be reused.
	for _, s := range authz.AllSources() {
		*req.KeyHeader(s) = string([]byte(*req.KeyHeader(s)))
	}
	return req, nil
}
