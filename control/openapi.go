package control

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/audit"
	"github.com/sluicegw/sluice/control/monitor"
)

// openAPIDoc is the committed OpenAPI document (control/openapi.json),
// regenerated from the route table by `go test ./control -run OpenAPI
// -update` and checked against it by that test.
//
//go:embed openapi.json
var openAPIDoc []byte

func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openAPIDoc)
	return err
}

// operationTypes returns, per route name, the request body and answer
// types documented for it (nil: none).
func operationTypes() map[string][2]any {
	return map[string][2]any{
		"GetTapeLibrary":          {nil, api.TapeLibrary{}},
		"UpdateTapeAutoCreate":    {api.TapeAutoCreate{}, api.TapeLibrary{}},
		"CreateTapes":             {api.CreateTapes{}, api.TapeList{}},
		"ListTapes":               {nil, api.TapeList{}},
		"GetTape":                 {nil, api.Tape{}},
		"DeleteTape":              {nil, nil},
		"ImportTape":              {nil, api.Tape{}},
		"ExportTape":              {nil, api.Tape{}},
		"ArchiveTape":             {nil, api.Tape{}},
		"RetrieveTape":            {nil, api.Tape{}},
		"ResizeVolume":            {api.ResizeVolume{}, api.Volume{}},
		"GetHealth":               {nil, api.Health{}},
		"GetOpenAPI":              {nil, map[string]any{}},
		"GetGateway":              {nil, api.Gateway{}},
		"GetBandwidth":            {nil, api.Bandwidth{}},
		"UpdateBandwidth":         {api.Bandwidth{}, api.Bandwidth{}},
		"GetMaintenanceWindow":    {nil, api.MaintenanceWindow{}},
		"UpdateMaintenanceWindow": {api.MaintenanceWindow{}, api.MaintenanceWindow{}},
		"GetBandwidthSchedule":    {nil, api.BandwidthSchedule{}},
		"UpdateBandwidthSchedule": {api.BandwidthSchedule{}, api.BandwidthSchedule{}},
		"CreateVolume":            {api.CreateVolume{}, api.Volume{}},
		"ListVolumes":             {nil, api.VolumeList{}},
		"GetVolume":               {nil, api.Volume{}},
		"DeleteVolume":            {nil, nil},
		"CreateSnapshot":          {api.CreateSnapshot{}, api.Snapshot{}},
		"ListSnapshots":           {nil, api.SnapshotList{}},
		"GetSnapshot":             {nil, api.Snapshot{}},
		"DeleteSnapshot":          {nil, nil},
		"VerifySnapshot":          {nil, api.VerifyResult{}},
		"RestoreSnapshot":         {api.RestoreSnapshot{}, api.Volume{}},
		"GetSnapshotSchedule":     {nil, api.Schedule{}},
		"UpdateSnapshotSchedule":  {api.Schedule{}, api.Schedule{}},
		"RunGarbageCollection":    {api.GCRequest{}, api.GCResult{}},
		"CreateShare":             {api.CreateShare{}, api.Share{}},
		"ListShares":              {nil, api.ShareList{}},
		"GetShare":                {nil, api.Share{}},
		"DeleteShare":             {nil, nil},
		"RefreshCache":            {api.RefreshShare{}, nil},
		"CreateToken":             {api.CreateToken{}, api.Token{}},
		"ListTokens":              {nil, api.TokenList{}},
		"RevokeToken":             {nil, nil},
		"ListAuditEvents":         {nil, api.AuditEvents{}},
		"VerifyAuditTrail":        {nil, audit.Report{}},
		"GetAuditPublicKey":       {nil, map[string]string{}},
		"QueryMetrics":            {nil, MetricsQuery{}},
		"ListMetricNames":         {nil, map[string][]string{}},
		"CreateAlarm":             {monitor.Rule{}, monitor.Alarm{}},
		"ListAlarms":              {nil, map[string][]monitor.Alarm{}},
		"GetAlarm":                {nil, monitor.Alarm{}},
		"DeleteAlarm":             {nil, nil},
	}
}

// OpenAPI builds the OpenAPI 3.1 document of the server's routes.
func (s *Server) OpenAPI() ([]byte, error) {
	types := operationTypes()
	paths := map[string]map[string]any{}
	for path, methods := range s.routes {
		ops := map[string]any{}
		for method, ri := range methods {
			op := map[string]any{
				"operationId":   ri.Name,
				"summary":       ri.Name,
				"x-sluice-role": ri.MinRole,
			}
			if ri.MinRole != RoleNone {
				op["security"] = []any{map[string]any{"bearer": []any{}}}
			}
			var params []any
			for _, seg := range strings.Split(path, "/") {
				if strings.HasPrefix(seg, "{") {
					params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
				}
			}
			if params != nil {
				op["parameters"] = params
			}
			t := types[ri.Name]
			if t[0] != nil {
				op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(t[0]))}}}
			}
			ok := "200"
			switch {
			case t[1] == nil:
				ok = "204"
			case method == http.MethodPost && (strings.HasPrefix(ri.Name, "Create") || strings.HasPrefix(ri.Name, "Restore")):
				ok = "201"
			}
			resp := map[string]any{"description": "success"}
			if t[1] != nil {
				resp["content"] = map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(t[1]))}}
			}
			errResp := map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
			op["responses"] = map[string]any{ok: resp, "default": errResp}
			ops[strings.ToLower(method)] = op
		}
		paths[path] = ops
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "Sluice control API", "version": "v1"},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas":         map[string]any{"Error": schemaOf(reflect.TypeOf(api.Error{}))},
		},
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

var timeType = reflect.TypeOf(time.Time{})

// schemaOf returns a JSON Schema for a Go type as encoding/json encodes it.
func schemaOf(t reflect.Type) map[string]any {
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Name() == "RawMessage" {
			return map[string]any{"type": "object"}
		}
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = schemaOf(f.Type)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
		sort.Strings(required)
		s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	return map[string]any{}
}
