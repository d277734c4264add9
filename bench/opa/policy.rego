# The keygate job in Rego, for OPA-Envoy: parse "Authorization: Bearer
# <key>", hash the key with SHA-256, look the hash up in data.keygate.keys,
# and allow with identity headers, or deny with a 401 and a JSON body.
package keygate.authz

import rego.v1

default result := {
	"allowed": false,
	"http_status": 401,
	"headers": {
		"content-type": "application/json",
		"www-authenticate": "Bearer realm=\"keygate\", error=\"invalid_token\"",
	},
	"body": "{\"error\":{\"message\":\"Incorrect API key provided.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}",
}

token := t if {
	parts := split(input.attributes.request.http.headers.authorization, " ")
	count(parts) == 2
	lower(parts[0]) == "bearer"
	t := parts[1]
}

key := data.keygate.keys[crypto.sha256(token)]

result := {
	"allowed": true,
	"headers": {"x-account-id": key.account_id, "x-key-id": key.key_id},
	"request_headers_to_remove": ["authorization"],
}
