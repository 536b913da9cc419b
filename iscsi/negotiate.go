package iscsi

import (
	"strconv"
	"strings"
)

// params are the operational parameters of a session and connection
// (RFC 7143 section 13) as negotiated at login.
type params struct {
	HeaderDigest        bool
	DataDigest          bool
	MaxConnections      int
	InitialR2T          bool
	ImmediateData       bool
	MaxBurstLength      int
	FirstBurstLength    int
	MaxOutstandingR2T   int
	DataPDUInOrder      bool
	DataSequenceInOrder bool
	DefaultTime2Wait    int
	DefaultTime2Retain  int
	ErrorRecoveryLevel  int
	// InitiatorMaxRecv is the initiator's MaxRecvDataSegmentLength: the
	// largest data segment the target may send.
	InitiatorMaxRecv int
	// TargetMaxRecv is the target's MaxRecvDataSegmentLength: the largest
	// data segment the initiator may send.
	TargetMaxRecv int
}

// targetLimits are the values the target offers for the negotiated keys.
type targetLimits struct {
	MaxRecvDataSegmentLength int
	MaxBurstLength           int
	FirstBurstLength         int
	MaxOutstandingR2T        int
}

// defaultLimits are Sluice's offers: large bursts so big writes need few
// R2Ts, and a receive segment large enough for 256 KiB of immediate data.
func defaultLimits() targetLimits {
	return targetLimits{
		MaxRecvDataSegmentLength: 256 << 10,
		MaxBurstLength:           1 << 20,
		FirstBurstLength:         256 << 10,
		MaxOutstandingR2T:        8,
	}
}

// rfcDefaults returns the RFC 7143 defaults that apply to keys nobody
// negotiates.
func rfcDefaults(l targetLimits) params {
	return params{
		MaxConnections:      1,
		InitialR2T:          true,
		ImmediateData:       true,
		MaxBurstLength:      262144,
		FirstBurstLength:    65536,
		MaxOutstandingR2T:   1,
		DataPDUInOrder:      true,
		DataSequenceInOrder: true,
		DefaultTime2Wait:    2,
		DefaultTime2Retain:  20,
		ErrorRecoveryLevel:  0,
		InitiatorMaxRecv:    8192,
		TargetMaxRecv:       l.MaxRecvDataSegmentLength,
	}
}

// Special text values.
const (
	valNotUnderstood = "NotUnderstood"
	valIrrelevant    = "Irrelevant"
	valReject        = "Reject"
)

// negotiator applies the RFC 7143 negotiation rules to the operational keys
// of a login, one request at a time.
type negotiator struct {
	limits targetLimits
	p      params
	// declared records that the target's MaxRecvDataSegmentLength went out.
	declared bool
}

func newNegotiator(l targetLimits) *negotiator {
	return &negotiator{limits: l, p: rfcDefaults(l)}
}

// negotiate answers the operational keys in kvs and returns the response
// pairs. Keys handled by the login state machine (names, session type,
// authentication) must be removed by the caller. Malformed values are
// answered with Reject and keep their defaults.
func (n *negotiator) negotiate(kvs []keyValue) []keyValue {
	var resp []keyValue
	answer := func(k, v string) { resp = append(resp, keyValue{k, v}) }
	for _, kv := range kvs {
		k, v := kv.Key, kv.Value
		if v == valNotUnderstood || v == valIrrelevant || v == valReject {
			// An answer to something we never offered: nothing to do.
			continue
		}
		switch k {
		case "HeaderDigest", "DataDigest":
			choice := ""
			for _, opt := range strings.Split(v, ",") {
				if opt == "CRC32C" || opt == "None" {
					choice = opt
					break
				}
			}
			if choice == "" {
				answer(k, valReject)
				continue
			}
			if k == "HeaderDigest" {
				n.p.HeaderDigest = choice == "CRC32C"
			} else {
				n.p.DataDigest = choice == "CRC32C"
			}
			answer(k, choice)
		case "MaxConnections":
			if _, ok := numberIn(v, 1, 65535); !ok {
				answer(k, valReject)
				continue
			}
			n.p.MaxConnections = 1
			answer(k, "1")
		case "InitialR2T":
			b, ok := parseBool(v)
			if !ok {
				answer(k, valReject)
				continue
			}
			// OR with our No: the initiator's value wins.
			n.p.InitialR2T = b
			answer(k, boolString(b))
		case "ImmediateData":
			b, ok := parseBool(v)
			if !ok {
				answer(k, valReject)
				continue
			}
			// AND with our Yes.
			n.p.ImmediateData = b
			answer(k, boolString(b))
		case "DataPDUInOrder", "DataSequenceInOrder":
			if _, ok := parseBool(v); !ok {
				answer(k, valReject)
				continue
			}
			// OR with our Yes.
			answer(k, "Yes")
		case "IFMarker", "OFMarker", "RDMAExtensions":
			if _, ok := parseBool(v); !ok {
				answer(k, valReject)
				continue
			}
			// AND with our No.
			answer(k, "No")
		case "MaxRecvDataSegmentLength":
			x, ok := numberIn(v, 512, 1<<24-1)
			if !ok {
				answer(k, valReject)
				continue
			}
			n.p.InitiatorMaxRecv = x
			n.declare(&resp)
		case "MaxBurstLength":
			x, ok := numberIn(v, 512, 1<<24-1)
			if !ok {
				answer(k, valReject)
				continue
			}
			n.p.MaxBurstLength = min(x, n.limits.MaxBurstLength)
			answer(k, strconv.Itoa(n.p.MaxBurstLength))
		case "FirstBurstLength":
			x, ok := numberIn(v, 512, 1<<24-1)
			if !ok {
				answer(k, valReject)
				continue
			}
			n.p.FirstBurstLength = min(x, n.limits.FirstBurstLength)
			answer(k, strconv.Itoa(n.p.FirstBurstLength))
		case "MaxOutstandingR2T":
			x, ok := numberIn(v, 1, 65535)
			if !ok {
				answer(k, valReject)
				continue
			}
			n.p.MaxOutstandingR2T = min(x, n.limits.MaxOutstandingR2T)
			answer(k, strconv.Itoa(n.p.MaxOutstandingR2T))
		case "DefaultTime2Wait":
			x, ok := numberIn(v, 0, 3600)
			if !ok {
				answer(k, valReject)
				continue
			}
			n.p.DefaultTime2Wait = max(x, 2)
			answer(k, strconv.Itoa(n.p.DefaultTime2Wait))
		case "DefaultTime2Retain":
			if _, ok := numberIn(v, 0, 3600); !ok {
				answer(k, valReject)
				continue
			}
			// ErrorRecoveryLevel 0 keeps nothing for reconnection.
			n.p.DefaultTime2Retain = 0
			answer(k, "0")
		case "ErrorRecoveryLevel":
			if _, ok := numberIn(v, 0, 2); !ok {
				answer(k, valReject)
				continue
			}
			n.p.ErrorRecoveryLevel = 0
			answer(k, "0")
		case "iSCSIProtocolLevel":
			x, ok := numberIn(v, 0, 31)
			if !ok {
				answer(k, valReject)
				continue
			}
			answer(k, strconv.Itoa(min(x, 1)))
		case "TaskReporting":
			answer(k, "RFC3720")
		case "OFMarkInt", "IFMarkInt", "InitiatorRecvDataSegmentLength",
			"TargetRecvDataSegmentLength", "SendTargets", "TargetAddress",
			"TargetPortalGroupTag", "TargetAlias":
			answer(k, valIrrelevant)
		case "InitiatorAlias":
			// Declarative; nothing to answer.
		default:
			answer(k, valNotUnderstood)
		}
	}
	return resp
}

// declare adds the target's MaxRecvDataSegmentLength once per login.
func (n *negotiator) declare(resp *[]keyValue) {
	if n.declared {
		return
	}
	n.declared = true
	*resp = append(*resp, keyValue{"MaxRecvDataSegmentLength", strconv.Itoa(n.limits.MaxRecvDataSegmentLength)})
}

// finish applies the cross-key rules at the end of negotiation and returns
// the result.
func (n *negotiator) finish() params {
	if n.p.FirstBurstLength > n.p.MaxBurstLength {
		n.p.FirstBurstLength = n.p.MaxBurstLength
	}
	return n.p
}

func numberIn(v string, lo, hi uint64) (int, bool) {
	x, err := parseNumber(v)
	if err != nil || x < lo || x > hi {
		return 0, false
	}
	return int(x), true
}

func parseBool(v string) (bool, bool) {
	switch v {
	case "Yes":
		return true, true
	case "No":
		return false, true
	}
	return false, false
}

func boolString(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}
