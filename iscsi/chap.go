package iscsi

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// CHAPConfig holds a target's CHAP credentials (RFC 7143 section 12.1.3).
// User and Secret authenticate the initiator; MutualUser and MutualSecret,
// when set, let an initiator that asks for mutual authentication verify the
// target.
type CHAPConfig struct {
	// User is the name the initiator must send in CHAP_N.
	User string
	// Secret is the secret shared with the initiator.
	Secret Secret
	// MutualUser is the name the target answers with in mutual CHAP.
	MutualUser string
	// MutualSecret is the target's secret for mutual CHAP. It must differ
	// from Secret.
	MutualSecret Secret
}

// validate checks the credentials are usable.
func (c *CHAPConfig) validate() error {
	if c.User == "" || c.Secret == "" {
		return fmt.Errorf("%w: CHAP needs a user and a secret", ErrInvalidTarget)
	}
	if len(c.Secret) > 255 || len(c.MutualSecret) > 255 {
		return fmt.Errorf("%w: CHAP secret longer than 255 bytes", ErrInvalidTarget)
	}
	if (c.MutualUser == "") != (c.MutualSecret == "") {
		return fmt.Errorf("%w: mutual CHAP needs both a user and a secret", ErrInvalidTarget)
	}
	if c.MutualSecret != "" && c.MutualSecret == c.Secret {
		return fmt.Errorf("%w: mutual CHAP secret must differ from the initiator secret", ErrInvalidTarget)
	}
	return nil
}

// chapAlg is one CHAP digest algorithm with its IANA number.
type chapAlg struct {
	id   int
	name string
	new  func() hash.Hash
}

// chapAlgorithm returns the algorithm with the given CHAP_A number.
func chapAlgorithm(id int) (chapAlg, bool) {
	switch id {
	case 5:
		return chapAlg{5, "MD5", md5.New}, true
	case 6:
		return chapAlg{6, "SHA-1", sha1.New}, true
	case 7:
		return chapAlg{7, "SHA-256", sha256.New}, true
	case 8:
		return chapAlg{8, "SHA3-256", func() hash.Hash { return sha3.New256() }}, true
	}
	return chapAlg{}, false
}

// response computes H(id || secret || challenge) (RFC 1994 section 4.1).
func (a chapAlg) response(id byte, secret string, challenge []byte) []byte {
	h := a.new()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// chooseCHAPAlg picks the first algorithm in the initiator's list that the
// target supports, keeping the initiator's order of preference.
func chooseCHAPAlg(list string) (chapAlg, bool) {
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			continue
		}
		if a, ok := chapAlgorithm(n); ok {
			return a, true
		}
	}
	return chapAlg{}, false
}

// decodeCHAPBinary decodes a CHAP binary value: 0x/0X hex or 0b/0B base64.
func decodeCHAPBinary(v string) ([]byte, error) {
	if len(v) < 3 || v[0] != '0' {
		return nil, fmt.Errorf("%w: bad CHAP binary value", errProtocol)
	}
	body := v[2:]
	switch v[1] {
	case 'x', 'X':
		if len(body)%2 == 1 {
			body = "0" + body
		}
		b, err := hex.DecodeString(body)
		if err != nil {
			return nil, fmt.Errorf("%w: bad CHAP hex value", errProtocol)
		}
		return b, nil
	case 'b', 'B':
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return nil, fmt.Errorf("%w: bad CHAP base64 value", errProtocol)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: bad CHAP binary value", errProtocol)
}

func encodeCHAPBinary(b []byte) string { return "0x" + hex.EncodeToString(b) }

// chapServer runs the target side of one CHAP exchange.
type chapServer struct {
	cfg       CHAPConfig
	alg       chapAlg
	id        byte
	challenge []byte
	state     int // 0 waiting for CHAP_A, 1 waiting for CHAP_N/CHAP_R, 2 done
	mutual    bool
}

// step processes the CHAP keys of one login request. It returns the
// response pairs and whether authentication completed.
func (c *chapServer) step(kv map[string]string) ([]keyValue, bool, error) {
	switch c.state {
	case 0:
		list, ok := kv["CHAP_A"]
		if !ok {
			return nil, false, nil
		}
		alg, ok := chooseCHAPAlg(list)
		if !ok {
			return []keyValue{{"CHAP_A", valReject}}, false, fmt.Errorf("%w: no supported CHAP algorithm in %q", errAuth, list)
		}
		c.alg = alg
		var idb [1]byte
		c.challenge = make([]byte, max(16, alg.new().Size()))
		if _, err := rand.Read(idb[:]); err != nil {
			return nil, false, fmt.Errorf("iscsi: CHAP challenge: %w", err)
		}
		if _, err := rand.Read(c.challenge); err != nil {
			return nil, false, fmt.Errorf("iscsi: CHAP challenge: %w", err)
		}
		c.id = idb[0]
		c.state = 1
		return []keyValue{
			{"CHAP_A", strconv.Itoa(alg.id)},
			{"CHAP_I", strconv.Itoa(int(c.id))},
			{"CHAP_C", encodeCHAPBinary(c.challenge)},
		}, false, nil
	case 1:
		name, okN := kv["CHAP_N"]
		rv, okR := kv["CHAP_R"]
		if !okN || !okR {
			return nil, false, fmt.Errorf("%w: CHAP_N or CHAP_R missing", errAuth)
		}
		r, err := decodeCHAPBinary(rv)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %w", errAuth, err)
		}
		want := c.alg.response(c.id, c.cfg.Secret.Reveal(), c.challenge)
		userOK := subtle.ConstantTimeCompare([]byte(name), []byte(c.cfg.User)) == 1
		respOK := subtle.ConstantTimeCompare(r, want) == 1
		if !userOK {
			return nil, false, fmt.Errorf("%w: unknown CHAP user %q", errAuth, name)
		}
		if !respOK {
			return nil, false, fmt.Errorf("%w: wrong CHAP response for user %q", errAuth, name)
		}
		c.state = 2
		iv, okI := kv["CHAP_I"]
		cv, okC := kv["CHAP_C"]
		if !okI && !okC {
			return nil, true, nil
		}
		if !okI || !okC {
			return nil, false, fmt.Errorf("%w: mutual CHAP needs CHAP_I and CHAP_C", errAuth)
		}
		if c.cfg.MutualSecret == "" {
			return nil, false, fmt.Errorf("%w: initiator asked for mutual CHAP, target has no mutual secret", errAuth)
		}
		id, err := parseNumber(iv)
		if err != nil || id > 255 {
			return nil, false, fmt.Errorf("%w: bad CHAP_I", errAuth)
		}
		ch, err := decodeCHAPBinary(cv)
		if err != nil || len(ch) == 0 || len(ch) > 1024 {
			return nil, false, fmt.Errorf("%w: bad mutual CHAP challenge", errAuth)
		}
		if subtle.ConstantTimeCompare(ch, c.challenge) == 1 {
			return nil, false, fmt.Errorf("%w: mutual CHAP challenge reflects the target's", errAuth)
		}
		c.mutual = true
		resp := c.alg.response(byte(id), c.cfg.MutualSecret.Reveal(), ch)
		return []keyValue{
			{"CHAP_N", c.cfg.MutualUser},
			{"CHAP_R", encodeCHAPBinary(resp)},
		}, true, nil
	}
	return nil, c.state == 2, nil
}
