// Package api holds the JSON types of Sluice's control API (/v1), shared by
// the server (package control) and its clients (package control/client,
// sluicectl). Field names are stable: scripts read them through
// `sluicectl --output json`.
package api

import (
	"encoding/json"
	"time"
)

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

// Volume modes.
const (
	// ModeStored keeps primary data on local disk with snapshots in S3.
	ModeStored = "stored"
	// ModeCached keeps primary data in S3 with hot blocks in a local cache.
	ModeCached = "cached"
)

// Volume is a block volume served over iSCSI (GET /v1/volumes/{name}).
type Volume struct {
	Name string `json:"name"`
	// Mode is "stored" or "cached".
	Mode string `json:"mode"`
	// IQN is the iSCSI target name; the volume is LUN 0.
	IQN       string    `json:"iqn"`
	SizeBytes int64     `json:"size_bytes"`
	BlockSize int       `json:"block_size"`
	Created   time.Time `json:"created"`
	// CHAPUser is the initiator's CHAP user name; empty when CHAP is off.
	// Secrets are never returned.
	CHAPUser string `json:"chap_user,omitempty"`
	// MutualCHAP says whether the target also authenticates to the
	// initiator.
	MutualCHAP        bool     `json:"mutual_chap"`
	AllowedInitiators []string `json:"allowed_initiators"`
	// Sessions is the number of iSCSI sessions logged in to the volume.
	Sessions int `json:"sessions"`
}

// CreateVolume is the body of POST /v1/volumes.
type CreateVolume struct {
	Name string `json:"name"`
	// Mode defaults to "stored".
	Mode      string `json:"mode,omitempty"`
	SizeBytes int64  `json:"size_bytes"`
	// BlockSize is the logical block size, 512 (default) or 4096.
	BlockSize int `json:"block_size,omitempty"`
	// CHAPUser and CHAPSecret turn on CHAP (secret: 12 to 255 bytes).
	CHAPUser   string `json:"chap_user,omitempty"`
	CHAPSecret string `json:"chap_secret,omitempty"`
	// MutualCHAPUser and MutualCHAPSecret make the target authenticate
	// itself to the initiator too.
	MutualCHAPUser    string   `json:"mutual_chap_user,omitempty"`
	MutualCHAPSecret  string   `json:"mutual_chap_secret,omitempty"`
	AllowedInitiators []string `json:"allowed_initiators,omitempty"`
}

// VolumeList is the answer of GET /v1/volumes.
type VolumeList struct {
	Volumes []Volume `json:"volumes"`
}

// Token describes an API token (GET /v1/tokens). The secret is shown only
// once, in the answer to its creation.
type Token struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	// Token is the bearer token itself, set only when it was just created.
	Token string `json:"token,omitempty"`
}

// CreateToken is the body of POST /v1/tokens.
type CreateToken struct {
	Name string `json:"name"`
	// Role is admin, operator or read-only.
	Role string `json:"role"`
}

// TokenList is the answer of GET /v1/tokens.
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// AuditEvents is the answer of GET /v1/audit/events.
type AuditEvents struct {
	Events []json.RawMessage `json:"events"`
	// Next continues the listing (pass as after=).
	Next uint64 `json:"next,omitempty"`
}
