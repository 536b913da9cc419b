package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/control"
	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/events"
	"github.com/sluicegw/sluice/vtl"
)

// TapeConfig configures the tape gateway.
type TapeConfig struct {
	// Enabled serves the library (default true).
	Enabled *bool `yaml:"enabled"`
	// Gateway names the library in its target names
	// (iqn.2026-11.io.sluicegw:<gateway>-mediachanger); default "sluice".
	Gateway string `yaml:"gateway"`
	// ChangerModel is AWS-Gateway-VTL (default), STK-L700 or
	// IBM-03584L32-0402.
	ChangerModel string `yaml:"changer_model"`
	// Drives (default 10) and Slots (default 1600).
	Drives int `yaml:"drives"`
	Slots  int `yaml:"slots"`
}

// tapePrefix is where the library keeps tapes and state in the bucket.
const tapePrefix = "sluice-vtl/"

// tapes adapts the library to control.Tapes.
type tapes struct {
	lib     *vtl.Library
	model   string
	onEvent func(events.Event)
	log     *slog.Logger
	// archives tracks archive-on-eject work; Close waits for it.
	archives sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

var _ control.Tapes = (*tapes)(nil)

func (d *Daemon) openTapes(ctx context.Context) error {
	c := d.cfg.Tape
	if c.Enabled != nil && !*c.Enabled {
		return nil
	}
	if c.Gateway == "" {
		c.Gateway = "sluice"
	}
	t := &tapes{onEvent: d.bus.Publish, log: d.log.With("component", "vtl")}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	lib, err := vtl.Open(ctx, vtl.Config{
		Store: d.store, Prefix: tapePrefix, Gateway: c.Gateway, ChangerModel: c.ChangerModel,
		Drives: c.Drives, Slots: c.Slots, Logger: d.log, // the package names its component
		// Like AWS, a tape the backup software ejects (moves to an I/E
		// slot) is archived to its pool.
		OnEject: t.archiveOnEject,
	})
	if err != nil {
		if errors.Is(err, vtl.ErrInvalid) {
			return fmt.Errorf("%w: tape library: %w", ErrConfig, err)
		}
		return fmt.Errorf("%w: tape library: %w", ErrStore, err)
	}
	for _, t := range lib.Targets() {
		if err := d.iscsi.AddTarget(t); err != nil {
			lib.Close(ctx)
			return fmt.Errorf("%w: tape target %s: %w", ErrConfig, t.Name, err)
		}
	}
	t.model = c.ChangerModel
	if t.model == "" {
		t.model = vtl.ModelAWS
	}
	t.lib = lib
	d.tapes = t
	return nil
}

func tapeAPI(t vtl.TapeInfo) api.Tape {
	out := api.Tape{Barcode: t.Barcode, SizeBytes: t.Size, UsedBytes: t.Used, Pool: t.Pool, WORM: t.WORM,
		Status: t.Status, Location: t.Location, ReadOnly: t.ReadOnly, Created: t.Created}
	if !t.Archived.IsZero() {
		a := t.Archived
		out.Archived = &a
	}
	if !t.RetainUntil.IsZero() {
		r := t.RetainUntil
		out.RetainUntil = &r
	}
	return out
}

// tapeErr maps library errors to API errors.
func tapeErr(barcode string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, vtl.ErrNotFound):
		return control.NotFound("no tape %q", barcode)
	case errors.Is(err, vtl.ErrInvalid):
		return control.BadRequest(err)
	case errors.Is(err, vtl.ErrBusy), errors.Is(err, vtl.ErrNoSpace), errors.Is(err, vtl.ErrBarcodeUsed),
		errors.Is(err, vtl.ErrRetentionLocked), errors.Is(err, vtl.ErrConflict):
		return control.Conflict("%v", err)
	}
	return err
}

func (t *tapes) Library(ctx context.Context) (api.TapeLibrary, error) {
	out := api.TapeLibrary{ChangerIQN: t.lib.ChangerIQN()}
	for _, d := range t.lib.Drives() {
		out.DriveIQNs = append(out.DriveIQNs, t.lib.DriveIQN(d.Number()))
	}
	if r := t.lib.AutoCreateRule(); r != nil {
		out.AutoCreate = &api.TapeAutoCreate{MinAvailable: r.MinAvailable, BarcodePrefix: r.BarcodePrefix, SizeBytes: r.Size, Pool: r.Pool, WORM: r.WORM}
	}
	out.Model = t.model
	return out, nil
}

func (t *tapes) CreateTapes(ctx context.Context, req api.CreateTapes) ([]api.Tape, error) {
	ts, err := t.lib.CreateTapes(ctx, vtl.CreateOptions{BarcodePrefix: req.BarcodePrefix, Count: req.Count, Size: req.SizeBytes, Pool: req.Pool, WORM: req.WORM})
	if err != nil {
		return nil, tapeErr("", err)
	}
	out := make([]api.Tape, 0, len(ts))
	for _, x := range ts {
		out = append(out, tapeAPI(x))
	}
	return out, nil
}

func (t *tapes) ListTapes(ctx context.Context) ([]api.Tape, error) {
	ts := t.lib.Tapes()
	slices.SortFunc(ts, func(a, b vtl.TapeInfo) int { return strings.Compare(a.Barcode, b.Barcode) })
	out := make([]api.Tape, 0, len(ts))
	for _, x := range ts {
		out = append(out, tapeAPI(x))
	}
	return out, nil
}

func (t *tapes) GetTape(ctx context.Context, barcode string) (api.Tape, error) {
	x, err := t.lib.Tape(barcode)
	if err != nil {
		return api.Tape{}, tapeErr(barcode, err)
	}
	return tapeAPI(x), nil
}

func (t *tapes) DeleteTape(ctx context.Context, barcode string, bypass bool, reason string) error {
	return tapeErr(barcode, t.lib.DeleteTape(ctx, barcode, vtl.DeleteOptions{BypassGovernance: bypass, Reason: reason}))
}

func (t *tapes) TapeAction(ctx context.Context, barcode, action string) (api.Tape, error) {
	var x vtl.TapeInfo
	var err error
	switch action {
	case "import":
		x, err = t.lib.ImportTape(ctx, barcode)
	case "export":
		x, err = t.lib.ExportTape(ctx, barcode)
	case "archive":
		x, err = t.lib.ArchiveTape(ctx, barcode)
		if err == nil && t.onEvent != nil {
			t.onEvent(events.Event{Type: events.TapeArchived, Resource: "tapes/" + barcode, Attrs: map[string]string{"pool": x.Pool}})
		}
	case "retrieve":
		x, err = t.lib.RetrieveTape(ctx, barcode)
		if err == nil && t.onEvent != nil {
			t.onEvent(events.Event{Type: events.TapeRetrieved, Resource: "tapes/" + barcode, Attrs: map[string]string{"location": x.Location}})
		}
	default:
		return api.Tape{}, control.NotFound("no tape action %q", action)
	}
	if err != nil {
		return api.Tape{}, tapeErr(barcode, err)
	}
	return tapeAPI(x), nil
}

func (t *tapes) SetAutoCreate(ctx context.Context, r api.TapeAutoCreate) (api.TapeLibrary, error) {
	var rule *vtl.AutoCreateRule
	if r.MinAvailable > 0 {
		rule = &vtl.AutoCreateRule{MinAvailable: r.MinAvailable, BarcodePrefix: r.BarcodePrefix, Size: r.SizeBytes, Pool: r.Pool, WORM: r.WORM}
	}
	if err := t.lib.SetAutoCreate(ctx, rule); err != nil {
		return api.TapeLibrary{}, tapeErr("", err)
	}
	return t.Library(ctx)
}

// archiveOnEject archives an ejected tape in the background.
func (t *tapes) archiveOnEject(barcode string) {
	t.archives.Add(1)
	go func() {
		defer t.archives.Done()
		if t.lib == nil {
			return
		}
		if _, err := t.TapeAction(t.ctx, barcode, "archive"); err != nil {
			t.log.Warn("archiving an ejected tape", "barcode", barcode, "err", err)
		}
	}()
}

// closeTapes unloads the drives (committing written data) and saves the
// library state.
func (d *Daemon) closeTapes() error {
	if d.tapes == nil {
		return nil
	}
	d.tapes.cancel()
	d.tapes.archives.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := d.tapes.lib.Close(ctx)
	d.tapes = nil
	return err
}
