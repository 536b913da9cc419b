// Package client is a Go client of Sluice's control API, used by sluicectl
// and by tests. It finds the endpoint and token the way sluicectl documents:
// explicit values, then SLUICE_ENDPOINT / SLUICE_TOKEN, then the data
// directory of a daemon on this machine.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicegw/sluice/control/api"
)

// DefaultEndpoint is used when nothing else names the API.
const DefaultEndpoint = "http://127.0.0.1:8780"

// Client calls the control API.
type Client struct {
	endpoint string
	token    string
	http     *http.Client
}

// Options locate the API. Empty fields are looked up (see Resolve).
type Options struct {
	Endpoint string
	Token    string
	DataDir  string
	Timeout  time.Duration
	// CACertFile is a PEM file of certificates to trust for an https
	// endpoint; Resolve sets it to the data directory's self-signed
	// certificate when there is one.
	CACertFile string
}

// Resolve fills Endpoint and Token: a flag value wins, then SLUICE_ENDPOINT
// and SLUICE_TOKEN, then DataDir's control.json and admin.token, then the
// default endpoint.
func Resolve(o Options) (Options, error) {
	if o.Endpoint == "" {
		o.Endpoint = os.Getenv("SLUICE_ENDPOINT")
	}
	if o.Token == "" {
		o.Token = os.Getenv("SLUICE_TOKEN")
	}
	if o.DataDir != "" {
		if o.Endpoint == "" {
			raw, err := os.ReadFile(filepath.Join(o.DataDir, api.ControlEndpointFile))
			if err == nil {
				var ep api.ControlEndpoint
				if json.Unmarshal(raw, &ep) == nil {
					o.Endpoint = ep.URL
				}
			}
		}
		if o.CACertFile == "" {
			p := filepath.Join(o.DataDir, "tls", api.TLSCertFile)
			if _, err := os.Stat(p); err == nil {
				o.CACertFile = p
			}
		}
		if o.Token == "" {
			raw, err := os.ReadFile(filepath.Join(o.DataDir, api.AdminTokenFile))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return o, fmt.Errorf("reading the token: %w", err)
			}
			o.Token = strings.TrimSpace(string(raw))
		}
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	o.Endpoint = strings.TrimRight(o.Endpoint, "/")
	if !strings.Contains(o.Endpoint, "://") {
		o.Endpoint = "http://" + o.Endpoint
	}
	return o, nil
}

// New returns a client for resolved options.
func New(o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	hc := &http.Client{Timeout: o.Timeout}
	if o.CACertFile != "" {
		if pem, err := os.ReadFile(o.CACertFile); err == nil {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				t := http.DefaultTransport.(*http.Transport).Clone()
				t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
				hc.Transport = t
			}
		}
	}
	return &Client{endpoint: o.Endpoint, token: o.Token, http: hc}
}

// Endpoint returns the API base URL.
func (c *Client) Endpoint() string { return c.endpoint }

// APIError is an error answer of the API.
type APIError struct {
	Status int
	api.ErrorDetail
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d, %s)", e.Message, e.Status, e.Code)
}

// ErrUnreachable wraps failures to reach the API at all.
var ErrUnreachable = errors.New("control API unreachable")

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when non-nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", "sluicectl")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.endpoint, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode >= 400 {
		var e api.Error
		if json.Unmarshal(raw, &e) != nil || e.Error.Code == "" {
			return &APIError{Status: resp.StatusCode, ErrorDetail: api.ErrorDetail{Code: "http_error", Message: strings.TrimSpace(string(raw))}}
		}
		return &APIError{Status: resp.StatusCode, ErrorDetail: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Health calls GET /v1/health.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	var h api.Health
	return h, c.Do(ctx, http.MethodGet, "/v1/health", nil, &h)
}

// Gateway calls GET /v1/gateway.
func (c *Client) Gateway(ctx context.Context) (api.Gateway, error) {
	var g api.Gateway
	return g, c.Do(ctx, http.MethodGet, "/v1/gateway", nil, &g)
}

// Bandwidth calls GET /v1/gateway/bandwidth.
func (c *Client) Bandwidth(ctx context.Context) (api.Bandwidth, error) {
	var b api.Bandwidth
	return b, c.Do(ctx, http.MethodGet, "/v1/gateway/bandwidth", nil, &b)
}

// SetBandwidth calls PUT /v1/gateway/bandwidth.
func (c *Client) SetBandwidth(ctx context.Context, b api.Bandwidth) (api.Bandwidth, error) {
	var out api.Bandwidth
	return out, c.Do(ctx, http.MethodPut, "/v1/gateway/bandwidth", b, &out)
}

// CreateVolume calls POST /v1/volumes.
func (c *Client) CreateVolume(ctx context.Context, req api.CreateVolume) (api.Volume, error) {
	var v api.Volume
	return v, c.Do(ctx, http.MethodPost, "/v1/volumes", req, &v)
}

// ListVolumes calls GET /v1/volumes.
func (c *Client) ListVolumes(ctx context.Context) ([]api.Volume, error) {
	var l api.VolumeList
	return l.Volumes, c.Do(ctx, http.MethodGet, "/v1/volumes", nil, &l)
}

// GetVolume calls GET /v1/volumes/{name}.
func (c *Client) GetVolume(ctx context.Context, name string) (api.Volume, error) {
	var v api.Volume
	return v, c.Do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(name), nil, &v)
}

// DeleteVolume calls DELETE /v1/volumes/{name}.
func (c *Client) DeleteVolume(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/volumes/"+url.PathEscape(name), nil, nil)
}

// CreateToken calls POST /v1/tokens; the answer holds the token text.
func (c *Client) CreateToken(ctx context.Context, req api.CreateToken) (api.Token, error) {
	var t api.Token
	return t, c.Do(ctx, http.MethodPost, "/v1/tokens", req, &t)
}

// ListTokens calls GET /v1/tokens.
func (c *Client) ListTokens(ctx context.Context) ([]api.Token, error) {
	var l api.TokenList
	return l.Tokens, c.Do(ctx, http.MethodGet, "/v1/tokens", nil, &l)
}

// RevokeToken calls DELETE /v1/tokens/{id}.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// AuditEvents calls GET /v1/audit/events with filter parameters.
func (c *Client) AuditEvents(ctx context.Context, q url.Values) (api.AuditEvents, error) {
	var e api.AuditEvents
	return e, c.Do(ctx, http.MethodGet, "/v1/audit/events?"+q.Encode(), nil, &e)
}

// VerifyAudit calls GET /v1/audit/verify?source=... and decodes the report
// into out.
func (c *Client) VerifyAudit(ctx context.Context, source string, out any) error {
	return c.Do(ctx, http.MethodGet, "/v1/audit/verify?source="+url.QueryEscape(source), nil, out)
}

// MetricsQuery calls GET /v1/metrics/query and decodes the answer into out.
func (c *Client) MetricsQuery(ctx context.Context, q url.Values, out any) error {
	return c.Do(ctx, http.MethodGet, "/v1/metrics/query?"+q.Encode(), nil, out)
}

// CreateSnapshot calls POST /v1/volumes/{name}/snapshots; it returns when
// the snapshot is completed or failed.
func (c *Client) CreateSnapshot(ctx context.Context, volume string, req api.CreateSnapshot) (api.Snapshot, error) {
	var s api.Snapshot
	return s, c.Do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(volume)+"/snapshots", req, &s)
}

// ListSnapshots calls GET /v1/snapshots (all volumes when volume is empty).
func (c *Client) ListSnapshots(ctx context.Context, volume string) ([]api.Snapshot, error) {
	var l api.SnapshotList
	q := ""
	if volume != "" {
		q = "?volume=" + url.QueryEscape(volume)
	}
	return l.Snapshots, c.Do(ctx, http.MethodGet, "/v1/snapshots"+q, nil, &l)
}

// GetSnapshot calls GET /v1/snapshots/{id}.
func (c *Client) GetSnapshot(ctx context.Context, id string) (api.Snapshot, error) {
	var s api.Snapshot
	return s, c.Do(ctx, http.MethodGet, "/v1/snapshots/"+url.PathEscape(id), nil, &s)
}

// DeleteSnapshot calls DELETE /v1/snapshots/{id}.
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/snapshots/"+url.PathEscape(id), nil, nil)
}

// VerifySnapshot calls POST /v1/snapshots/{id}/verify.
func (c *Client) VerifySnapshot(ctx context.Context, id string) (api.VerifyResult, error) {
	var r api.VerifyResult
	return r, c.Do(ctx, http.MethodPost, "/v1/snapshots/"+url.PathEscape(id)+"/verify", nil, &r)
}

// RestoreSnapshot calls POST /v1/snapshots/{id}/restore.
func (c *Client) RestoreSnapshot(ctx context.Context, id string, req api.RestoreSnapshot) (api.Volume, error) {
	var v api.Volume
	return v, c.Do(ctx, http.MethodPost, "/v1/snapshots/"+url.PathEscape(id)+"/restore", req, &v)
}

// SetSchedule calls PUT /v1/volumes/{name}/schedule.
func (c *Client) SetSchedule(ctx context.Context, volume string, s api.Schedule) (api.Schedule, error) {
	var out api.Schedule
	return out, c.Do(ctx, http.MethodPut, "/v1/volumes/"+url.PathEscape(volume)+"/schedule", s, &out)
}

// GetSchedule calls GET /v1/volumes/{name}/schedule.
func (c *Client) GetSchedule(ctx context.Context, volume string) (api.Schedule, error) {
	var out api.Schedule
	return out, c.Do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(volume)+"/schedule", nil, &out)
}

// RunGC calls POST /v1/gc.
func (c *Client) RunGC(ctx context.Context, dryRun bool) (api.GCResult, error) {
	var r api.GCResult
	return r, c.Do(ctx, http.MethodPost, "/v1/gc", api.GCRequest{DryRun: dryRun}, &r)
}

// CreateShare calls POST /v1/shares.
func (c *Client) CreateShare(ctx context.Context, req api.CreateShare) (api.Share, error) {
	var s api.Share
	return s, c.Do(ctx, http.MethodPost, "/v1/shares", req, &s)
}

// ListShares calls GET /v1/shares.
func (c *Client) ListShares(ctx context.Context) ([]api.Share, error) {
	var l api.ShareList
	return l.Shares, c.Do(ctx, http.MethodGet, "/v1/shares", nil, &l)
}

// GetShare calls GET /v1/shares/{name}.
func (c *Client) GetShare(ctx context.Context, name string) (api.Share, error) {
	var s api.Share
	return s, c.Do(ctx, http.MethodGet, "/v1/shares/"+url.PathEscape(name), nil, &s)
}

// DeleteShare calls DELETE /v1/shares/{name}.
func (c *Client) DeleteShare(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/shares/"+url.PathEscape(name), nil, nil)
}

// RefreshShare calls POST /v1/shares/{name}/refresh.
func (c *Client) RefreshShare(ctx context.Context, name string, req api.RefreshShare) error {
	return c.Do(ctx, http.MethodPost, "/v1/shares/"+url.PathEscape(name)+"/refresh", req, nil)
}

// ResizeVolume calls POST /v1/volumes/{name}/resize.
func (c *Client) ResizeVolume(ctx context.Context, name string, size int64) (api.Volume, error) {
	var v api.Volume
	return v, c.Do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(name)+"/resize", api.ResizeVolume{SizeBytes: size}, &v)
}
