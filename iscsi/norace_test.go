//go:build !race

package iscsi

// raceEnabled reports that the race detector is on.
const raceEnabled = false
