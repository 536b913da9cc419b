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

// TLSCertFile is the self-signed control certificate under DATA/tls,
// which clients on the same machine trust.
const TLSCertFile = "cert.pem"

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
	// ChunkSize and Codec are the snapshot chunking of the volume.
	ChunkSize int    `json:"chunk_size"`
	Codec     string `json:"codec"`
	// ChangedBytes is how much has changed since the last snapshot.
	ChangedBytes int64 `json:"changed_bytes"`
	// LastSnapshot is the snapshot the volume's next snapshot builds on.
	LastSnapshot string `json:"last_snapshot,omitempty"`
	// FromSnapshot is the snapshot the volume was created from.
	FromSnapshot string `json:"from_snapshot,omitempty"`
	// Cache holds a cached volume's cache figures.
	Cache *VolumeCache `json:"cache,omitempty"`
}

// VolumeCache are a cached volume's figures, named like AWS's metrics.
type VolumeCache struct {
	CacheHitPercent                   float64 `json:"cache_hit_percent"`
	CachePercentUsed                  float64 `json:"cache_percent_used"`
	CachePercentDirty                 float64 `json:"cache_percent_dirty"`
	UploadBufferPercentUsed           float64 `json:"upload_buffer_percent_used"`
	CloudBytesUploaded                int64   `json:"cloud_bytes_uploaded"`
	CloudBytesDownloaded              int64   `json:"cloud_bytes_downloaded"`
	DirtyBytes                        int64   `json:"dirty_bytes"`
	TimeSinceLastRecoveryPointSeconds float64 `json:"time_since_last_recovery_point_seconds"`
	Degraded                          bool    `json:"degraded"`
}

// ResizeVolume is the body of POST /v1/volumes/{name}/resize (cached
// volumes grow only).
type ResizeVolume struct {
	SizeBytes int64 `json:"size_bytes"`
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
	// ChunkSize is the snapshot chunk size, 64 KiB to 4 MiB (default
	// 1 MiB); Codec compresses snapshot chunks: zstd (default), lz4, none.
	ChunkSize int    `json:"chunk_size,omitempty"`
	Codec     string `json:"codec,omitempty"`
	// FromSnapshot creates the volume with a completed snapshot's content.
	FromSnapshot string `json:"from_snapshot,omitempty"`
}

// VolumeList is the answer of GET /v1/volumes.
type VolumeList struct {
	Volumes []Volume `json:"volumes"`
	// NextPageToken, when set, fetches the next page (?page_token=).
	NextPageToken string `json:"next_page_token,omitempty"`
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
	// NextPageToken, when set, fetches the next page (?page_token=).
	NextPageToken string `json:"next_page_token,omitempty"`
}

// AuditEvents is the answer of GET /v1/audit/events.
type AuditEvents struct {
	Events []json.RawMessage `json:"events"`
	// Next continues the listing (pass as after=).
	Next uint64 `json:"next,omitempty"`
}

// Snapshot is a point-in-time snapshot of a volume in the catalogue.
type Snapshot struct {
	ID     string `json:"id"`
	Volume string `json:"volume"`
	Parent string `json:"parent,omitempty"`
	// Status is pending, completed or error.
	Status          string            `json:"status"`
	Error           string            `json:"error,omitempty"`
	Created         time.Time         `json:"created"`
	Completed       *time.Time        `json:"completed,omitempty"`
	SizeBytes       int64             `json:"size_bytes"`
	ChunkSize       int               `json:"chunk_size"`
	Codec           string            `json:"codec"`
	Description     string            `json:"description,omitempty"`
	Tags            map[string]string `json:"tags,omitempty"`
	LogicalBytes    int64             `json:"logical_bytes"`
	StoredBytes     int64             `json:"stored_bytes"`
	ReferencedBytes int64             `json:"referenced_bytes"`
	ChunksUploaded  int64             `json:"chunks_uploaded"`
}

// CreateSnapshot is the body of POST /v1/volumes/{name}/snapshots.
type CreateSnapshot struct {
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// SnapshotList is the answer of GET /v1/snapshots.
type SnapshotList struct {
	Snapshots []Snapshot `json:"snapshots"`
	// NextPageToken, when set, fetches the next page (?page_token=).
	NextPageToken string `json:"next_page_token,omitempty"`
}

// RestoreSnapshot is the body of POST /v1/snapshots/{id}/restore: a new
// volume with the snapshot's content.
type RestoreSnapshot struct {
	Volume string `json:"volume"`
	// Mode of the new volume: stored (default; a full restore) or cached
	// (instant: blocks are fetched on first read).
	Mode string `json:"mode,omitempty"`
	// CHAP and initiator settings of the new volume, as in CreateVolume.
	CHAPUser          string   `json:"chap_user,omitempty"`
	CHAPSecret        string   `json:"chap_secret,omitempty"`
	AllowedInitiators []string `json:"allowed_initiators,omitempty"`
}

// VerifyResult is the answer of POST /v1/snapshots/{id}/verify.
type VerifyResult struct {
	ID string `json:"id"`
	OK bool   `json:"ok"`
	// Chunks is the number of distinct chunks re-read and re-hashed.
	Chunks int `json:"chunks"`
	// Missing and Corrupt name bad chunks (at most 100 each).
	Missing []string `json:"missing,omitempty"`
	Corrupt []string `json:"corrupt,omitempty"`
}

// Schedule is a volume's snapshot schedule (PUT/GET
// /v1/volumes/{name}/schedule): every IntervalHours (1-24) from StartHour
// UTC, keeping the last KeepLast and those younger than KeepDays.
type Schedule struct {
	Enabled       bool       `json:"enabled"`
	IntervalHours int        `json:"interval_hours"`
	StartHour     int        `json:"start_hour"`
	KeepLast      int        `json:"keep_last"`
	KeepDays      int        `json:"keep_days"`
	Next          *time.Time `json:"next,omitempty"`
	LastRun       *time.Time `json:"last_run,omitempty"`
	LastSnapshot  string     `json:"last_snapshot,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
}

// GCRequest is the body of POST /v1/gc.
type GCRequest struct {
	DryRun bool `json:"dry_run"`
}

// GCResult is the answer of POST /v1/gc.
type GCResult struct {
	Deferred     bool  `json:"deferred"`
	Snapshots    int   `json:"snapshots"`
	LiveChunks   int   `json:"live_chunks"`
	Chunks       int   `json:"chunks"`
	Deleted      int   `json:"deleted"`
	DeletedBytes int64 `json:"deleted_bytes"`
	Young        int   `json:"young"`
	// Packs counts the packs found; PacksRewritten those whose live chunks
	// were moved to new packs, PacksDeleted those with none live.
	Packs          int `json:"packs"`
	PacksRewritten int `json:"packs_rewritten"`
	PacksDeleted   int `json:"packs_deleted"`
}

// Share is an NFS file share whose files are objects in a bucket
// (GET /v1/shares/{name}). Clients mount "/NAME".
type Share struct {
	Name   string `json:"name"`
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix,omitempty"`
	// ExportPath is what clients mount.
	ExportPath string `json:"export_path"`
	// AllowedClients are CIDRs that may mount and use the share.
	AllowedClients []string `json:"allowed_clients"`
	// Squash is root (default), all or none.
	Squash   string    `json:"squash"`
	AnonUID  uint32    `json:"anon_uid"`
	AnonGID  uint32    `json:"anon_gid"`
	ReadOnly bool      `json:"read_only"`
	Created  time.Time `json:"created"`
	// Mounts is the number of clients that have the share mounted.
	Mounts int `json:"mounts"`
}

// CreateShare is the body of POST /v1/shares.
type CreateShare struct {
	Name string `json:"name"`
	// Bucket defaults to the gateway's bucket.
	Bucket string `json:"bucket,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	// AllowedClients defaults to loopback only (127.0.0.0/8, ::1/128).
	AllowedClients []string `json:"allowed_clients,omitempty"`
	Squash         string   `json:"squash,omitempty"`
	AnonUID        uint32   `json:"anon_uid,omitempty"`
	AnonGID        uint32   `json:"anon_gid,omitempty"`
	ReadOnly       bool     `json:"read_only,omitempty"`
}

// ShareList is the answer of GET /v1/shares.
type ShareList struct {
	Shares []Share `json:"shares"`
	// NextPageToken, when set, fetches the next page (?page_token=).
	NextPageToken string `json:"next_page_token,omitempty"`
}

// RefreshShare is the body of POST /v1/shares/{name}/refresh: forget cached
// metadata under Path (default the whole share) so objects changed directly
// in the bucket show at once.
type RefreshShare struct {
	Path      string `json:"path,omitempty"`
	Recursive bool   `json:"recursive,omitempty"`
}

// BandwidthInterval is one entry of the bandwidth schedule: on the given
// days (0 = Sunday … 6 = Saturday; empty = every day), from Start to End
// (HH:MM, UTC, End exclusive, End after Start), these limits replace the
// base limits (0 = unlimited).
type BandwidthInterval struct {
	DaysOfWeek          []int  `json:"days_of_week,omitempty"`
	Start               string `json:"start"`
	End                 string `json:"end"`
	UploadBytesPerSec   int64  `json:"upload_bytes_per_sec"`
	DownloadBytesPerSec int64  `json:"download_bytes_per_sec"`
}

// BandwidthSchedule is GET/PUT /v1/gateway/bandwidth-schedule.
type BandwidthSchedule struct {
	Intervals []BandwidthInterval `json:"intervals"`
	// Active is the index of the interval in force now (-1: none, the
	// base limits apply); set by the server.
	Active int `json:"active"`
}

// MaintenanceWindow is GET/PUT /v1/gateway/maintenance: the weekly hour
// (UTC) when the appliance may restart for updates.
type MaintenanceWindow struct {
	DayOfWeek int `json:"day_of_week"`
	Hour      int `json:"hour"`
	Minute    int `json:"minute"`
}

// Tape is a virtual tape (GET /v1/tapes/{barcode}).
type Tape struct {
	Barcode   string `json:"barcode"`
	SizeBytes int64  `json:"size_bytes"`
	UsedBytes int64  `json:"used_bytes"`
	Pool      string `json:"pool"`
	WORM      bool   `json:"worm"`
	// Status is available, exported, archived or retrieved.
	Status string `json:"status"`
	// Location is "slot 12", "drive 1", "ie 1", "shelf" or "archive".
	Location    string     `json:"location"`
	ReadOnly    bool       `json:"read_only"`
	Created     time.Time  `json:"created"`
	Archived    *time.Time `json:"archived,omitempty"`
	RetainUntil *time.Time `json:"retain_until,omitempty"`
}

// CreateTapes is the body of POST /v1/tapes.
type CreateTapes struct {
	// BarcodePrefix is 1 to 4 upper-case letters.
	BarcodePrefix string `json:"barcode_prefix"`
	Count         int    `json:"count"`
	SizeBytes     int64  `json:"size_bytes"`
	// Pool is default, archive or deep-archive.
	Pool string `json:"pool,omitempty"`
	WORM bool   `json:"worm,omitempty"`
}

// TapeList is the answer of GET /v1/tapes and POST /v1/tapes.
type TapeList struct {
	Tapes         []Tape `json:"tapes"`
	NextPageToken string `json:"next_page_token,omitempty"`
}

// TapeLibrary describes the library's devices (GET /v1/tape-library).
type TapeLibrary struct {
	ChangerIQN string   `json:"changer_iqn"`
	DriveIQNs  []string `json:"drive_iqns"`
	Model      string   `json:"model"`
	// AutoCreate is the rule that keeps tapes available; nil when off.
	AutoCreate *TapeAutoCreate `json:"auto_create,omitempty"`
}

// TapeAutoCreate keeps at least MinAvailable empty tapes in the library
// (PUT /v1/tape-library/auto-create; MinAvailable 0 turns it off).
type TapeAutoCreate struct {
	MinAvailable  int    `json:"min_available"`
	BarcodePrefix string `json:"barcode_prefix"`
	SizeBytes     int64  `json:"size_bytes"`
	Pool          string `json:"pool,omitempty"`
	WORM          bool   `json:"worm,omitempty"`
}
