// Package api holds the JSON types of Sluice's control API (/v1), shared by
// the server (package control) and its clients (package control/client,
// sluicectl). Field names are stable: scripts read them through
// `sluicectl --output json`.
package api

import "time"

// Error is the body of every error response: {"error": {...}}.
type Error struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes a failed request.
type ErrorDetail struct {
	// Code is a stable machine-readable class: bad_request, unauthorized,
	// forbidden, not_found, method_not_allowed, conflict,
	// precondition_failed, payload_too_large, too_many_requests, internal,
	// unavailable.
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message"`
	// RequestID identifies the request in the daemon's log.
	RequestID string `json:"request_id,omitempty"`
}

// Health is the answer of GET /v1/health.
type Health struct {
	// Status is "ok" when the object store is reachable, else "degraded".
	Status        string      `json:"status"`
	Version       string      `json:"version"`
	Started       time.Time   `json:"started"`
	UptimeSeconds float64     `json:"uptime_seconds"`
	ObjectStore   StoreHealth `json:"object_store"`
}

// StoreHealth says whether the object store answers.
type StoreHealth struct {
	// Kind is "embedded" or "s3".
	Kind string `json:"kind"`
	// Endpoint and Bucket locate an S3 store; empty for embedded.
	Endpoint  string    `json:"endpoint,omitempty"`
	Bucket    string    `json:"bucket,omitempty"`
	Reachable bool      `json:"reachable"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// Bandwidth is the gateway's object-store bandwidth limit
// (GET/PUT /v1/gateway/bandwidth). 0 means unlimited.
type Bandwidth struct {
	UploadBytesPerSec   int64 `json:"upload_bytes_per_sec"`
	DownloadBytesPerSec int64 `json:"download_bytes_per_sec"`
}

// Gateway describes the appliance (GET /v1/gateway).
type Gateway struct {
	Version     string    `json:"version"`
	Started     time.Time `json:"started"`
	DataDir     string    `json:"data_dir"`
	ControlAddr string    `json:"control_addr"`
	ISCSIAddr   string    `json:"iscsi_addr"`
	NFSAddr     string    `json:"nfs_addr"`
	ObjectStore string    `json:"object_store"`
	Bandwidth   Bandwidth `json:"bandwidth"`
}

// ControlEndpointFile is the file under the data directory where a running
// daemon records its API endpoint.
const ControlEndpointFile = "control.json"

// ControlEndpoint is the content of ControlEndpointFile.
type ControlEndpoint struct {
	URL string `json:"url"`
	PID int    `json:"pid"`
}

// AdminTokenFile is the file under the data directory that holds the admin
// token created on first start (mode 0600).
const AdminTokenFile = "admin.token"
