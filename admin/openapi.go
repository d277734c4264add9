package admin

import (
	_ "embed"
	"net/http"
)

// openAPIPath is where the handler serves openAPIDocument, to anyone: it
// holds no secret.
const openAPIPath = "/v1/openapi.json"

// openAPIDocument describes the HTTP routes in OpenAPI 3.0. make generate
// writes it from the routes and the error table (TestOpenAPIDocument with
// -update), and the tests check every answer of the server against it.
//
//go:embed openapi.json
var openAPIDocument []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeNotAllowed(w, http.MethodGet)
		return
	}
	writeJSON(w, http.StatusOK, openAPIDocument)
}
