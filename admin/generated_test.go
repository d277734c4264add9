package admin

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// The files derived from the routes, which make generate rewrites with
// -update and these tests check.
var update = flag.Bool("update", false, "rewrite openapi.json and the route table of doc.go from the routes")

// checkGenerated compares the file at path with want, or writes want there
// under -update.
func checkGenerated(t *testing.T, path string, want []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("admin/%s is stale: run make generate", path)
	}
}

// TestOpenAPIDocument checks that openapi.json, which the handler serves,
// is the document the routes and the error table make.
func TestOpenAPIDocument(t *testing.T) {
	doc, err := json.MarshalIndent(openAPI(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	checkGenerated(t, "openapi.json", append(doc, '\n'))
}

// TestDocRoutes checks that the route table in doc.go is the one the routes
// make.
func TestDocRoutes(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	// The table is the first code block after the heading.
	const heading, code = "// # HTTP routes\n", "\n//\t"
	start := bytes.Index(src, []byte(heading))
	if start < 0 {
		t.Fatalf("doc.go has no %q", heading)
	}
	start += bytes.Index(src[start:], []byte(code)) + 1
	end := start
	for bytes.HasPrefix(src[end:], []byte(code[1:])) {
		end += bytes.IndexByte(src[end:], '\n') + 1
	}
	checkGenerated(t, "doc.go", bytes.Join([][]byte{src[:start], docTable(), src[end:]}, nil))
}

// docTable lists the routes as lines of a doc comment's code block: method,
// path, RPC, and the fields of the query or body besides the path's.
func docTable() []byte {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, rt := range routes {
		var names []string
		for _, fd := range requestFields(rt) {
			names = append(names, fd.JSONName())
		}
		fields := ""
		switch {
		case len(names) == 0:
		case rt.method == http.MethodGet:
			fields = "?" + strings.Join(names, "=&") + "="
		default:
			fields = "{" + strings.Join(names, ", ") + "}"
		}
		fmt.Fprintf(tw, "%-4s %s\t%s\t%s\n", rt.method, pattern(rt), rt.desc.Name(), fields)
	}
	tw.Flush()
	var out bytes.Buffer
	for line := range strings.Lines(b.String()) {
		out.WriteString("//\t" + strings.TrimRight(line, " \n") + "\n")
	}
	return out.Bytes()
}

// pattern is the path of rt as its annotation gives it.
func pattern(rt *route) string {
	if rt.verb == "" {
		return rt.path
	}
	return rt.path + ":" + rt.verb
}

// requestFields are the fields of rt's request other than the path's.
func requestFields(rt *route) []protoreflect.FieldDescriptor {
	var fds []protoreflect.FieldDescriptor
	fields := rt.desc.Input().Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); fd != rt.param {
			fds = append(fds, fd)
		}
	}
	return fds
}

type object = map[string]any

// The JSON schemas of proto3 JSON values this API uses.
var (
	int64String    = object{"type": "string", "format": "int64", "pattern": `^-?[0-9]+$`}
	int64Input     = object{"oneOf": []any{object{"type": "integer", "format": "int64"}, int64String}}
	timestampValue = object{"type": "string", "format": "date-time"}
	durationValue  = object{"type": "string", "pattern": `^-?[0-9]+(\.[0-9]{1,9})?s$`}
	errorResponse  = object{"$ref": "#/components/responses/Error"}
)

// openAPIGen builds the OpenAPI document.
type openAPIGen struct {
	t       *testing.T
	schemas object
	input   map[string]bool // whether each schema is of a request or of an answer
}

// openAPI returns the document of the routes and the error table. int64s
// are strings in answers and numbers or strings in requests, as protojson
// writes and reads them; answers always hold their scalar and list fields.
func openAPI(t *testing.T) object {
	g := &openAPIGen{t: t, schemas: object{"Error": errorSchema()}, input: map[string]bool{}}
	paths := object{
		openAPIPath: object{"get": object{
			"operationId": "GetOpenAPI",
			"summary":     "This document. It needs no token.",
			"security":    []any{},
			"responses": object{"200": object{
				"description": "The OpenAPI document.",
				"content":     jsonContent(object{"type": "object"}),
			}},
		}},
	}
	for _, rt := range routes {
		item, _ := paths[pattern(rt)].(object)
		if item == nil {
			item = object{}
			paths[pattern(rt)] = item
		}
		item[strings.ToLower(rt.method)] = g.operation(rt)
	}
	return object{
		"openapi": "3.0.3",
		"info": object{
			"title":   "keygate admin API",
			"version": "v1",
			"description": "Accounts, balances, ledgers and API keys. Generated from proto/keygate/admin/v1/admin.proto " +
				"by make generate; the proto3 JSON mapping applies, see the admin package documentation.",
		},
		"security": []any{object{"adminToken": []any{}}},
		"paths":    paths,
		"components": object{
			"securitySchemes": object{"adminToken": object{"type": "http", "scheme": "bearer", "description": "The admin token."}},
			"schemas":         g.schemas,
			"responses": object{"Error": object{
				"description": "An error; its code is one of the Error schema's.",
				"content":     jsonContent(object{"$ref": "#/components/schemas/Error"}),
			}},
		},
	}
}

func (g *openAPIGen) operation(rt *route) object {
	var params []any
	if rt.param != nil {
		params = append(params, object{
			"name": string(rt.param.Name()), "in": "path", "required": true,
			"schema": object{"type": "string", "pattern": "^[^:]+$"},
		})
	}
	op := object{"operationId": string(rt.desc.Name())}
	if rt.method == http.MethodGet {
		for _, fd := range requestFields(rt) {
			params = append(params, object{"name": fd.JSONName(), "in": "query", "schema": g.field(fd, true)})
		}
	} else {
		op["requestBody"] = object{
			"description": "An empty body counts as {}; the path's field may be given again with the same value.",
			"content":     jsonContent(g.message(rt.desc.Input(), true)),
		}
	}
	if params != nil {
		op["parameters"] = params
	}
	responses := object{"200": object{"description": "OK", "content": jsonContent(g.message(rt.desc.Output(), false))}}
	for _, c := range errorClasses {
		responses[strconv.Itoa(c.http)] = errorResponse
	}
	if rt.method == http.MethodPost {
		responses[strconv.Itoa(http.StatusRequestEntityTooLarge)] = errorResponse
	}
	op["responses"] = responses
	return op
}

// message registers the schema of md, for requests or for answers, and
// returns a reference to it.
func (g *openAPIGen) message(md protoreflect.MessageDescriptor, input bool) object {
	name := string(md.Name())
	ref := object{"$ref": "#/components/schemas/" + name}
	if in, ok := g.input[name]; ok {
		if in != input {
			g.t.Fatalf("%s is both a request and an answer; their int64s differ", md.FullName())
		}
		return ref
	}
	g.input[name] = input
	props := object{}
	var required []string
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		props[fd.JSONName()] = g.field(fd, input)
		if !input && (fd.IsList() || fd.Message() == nil) {
			required = append(required, fd.JSONName())
		}
	}
	s := object{"type": "object", "properties": props, "additionalProperties": false}
	if required != nil {
		s["required"] = required
	}
	g.schemas[name] = s
	return ref
}

func (g *openAPIGen) field(fd protoreflect.FieldDescriptor, input bool) object {
	var s object
	switch {
	case fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Timestamp":
		s = timestampValue
	case fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Duration":
		s = durationValue
	case fd.Message() != nil:
		s = g.message(fd.Message(), input)
	case fd.Kind() == protoreflect.StringKind:
		s = object{"type": "string"}
	case fd.Kind() == protoreflect.Int32Kind:
		s = object{"type": "integer", "format": "int32"}
	case fd.Kind() == protoreflect.Int64Kind && input:
		s = int64Input
	case fd.Kind() == protoreflect.Int64Kind:
		s = int64String
	default:
		g.t.Fatalf("%s: no schema for %s fields", fd.FullName(), fd.Kind())
	}
	if fd.IsList() {
		return object{"type": "array", "items": s}
	}
	return s
}

// errorSchema is the body of every error answer.
func errorSchema() object {
	var codes []string
	for _, c := range errorClasses {
		codes = append(codes, c.code)
	}
	codes = append(codes, codeMethodNotAllowed, codePayloadTooLarge)
	return object{
		"type": "object", "required": []string{"error"}, "additionalProperties": false,
		"properties": object{"error": object{
			"type": "object", "required": []string{"code", "message"}, "additionalProperties": false,
			"properties": object{
				"code":    object{"type": "string", "enum": codes},
				"message": object{"type": "string"},
			},
		}},
	}
}

func jsonContent(schema object) object {
	return object{"application/json": object{"schema": schema}}
}
