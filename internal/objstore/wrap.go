package objstore

// Options select the wrappers Wrap puts around a base store.
type Options struct {
	// Retry configures retries and timeouts (always on).
	Retry RetryOptions
	// Limiter, when non-nil, applies bandwidth limits.
	Limiter *Limiter
	// Metrics, when non-nil, counts traffic.
	Metrics *Metrics
	// Faults, when non-nil, wraps the base store first (tests): injected
	// faults are then seen by metrics and retried like real ones.
	Faults func(Store) Store
}

// Wrap composes the production stack around base, in the one place where
// the order is decided:
//
//	Retry → Limit → Metrics → [Faults] → base
//
// Retry is outermost so that each retried attempt is rate-limited and
// counted as a real request; Metrics sits next to the store so that it sees
// every byte actually sent or received.
func Wrap(base Store, o Options) Store {
	s := base
	if o.Faults != nil {
		s = o.Faults(s)
	}
	if o.Metrics != nil {
		s = NewInstrumented(s, o.Metrics)
	}
	if o.Limiter != nil {
		s = NewLimited(s, o.Limiter)
	}
	return NewRetry(s, o.Retry)
}
