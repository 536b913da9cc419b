package scsi

// prState is the persistent reservation state of a Disk.
type prState struct{}

func (p *prState) init() {}

func (p *prState) restore(*PRState) {}

// PRState is a snapshot of persistent reservation state, as stored through
// PRStore.
type PRState struct{}

// PRStore persists the reservation state of disks whose registrations were
// made with APTPL.
type PRStore interface {
	SavePR(s PRState) error
}
