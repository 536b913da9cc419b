package appliance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicegw/sluice/control/api"
)

// TLS modes of the control listener.
const (
	TLSOff        = "off"
	TLSSelfSigned = "self-signed"
	TLSFiles      = "files"
)

// TLSConfig configures TLS on the control listener.
type TLSConfig struct {
	// Mode is off (the default: the API listens on loopback), self-signed
	// (a certificate generated on first start under DATA/tls, its
	// fingerprint logged) or files (CertFile and KeyFile).
	Mode     string `yaml:"mode"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// controlTLS returns the TLS configuration for the control listener, or
// nil when TLS is off.
func controlTLS(cfg Config, log *slog.Logger) (*tls.Config, error) {
	c := cfg.ControlTLS
	var certFile, keyFile string
	switch c.Mode {
	case "", TLSOff:
		return nil, nil
	case TLSFiles:
		certFile, keyFile = c.CertFile, c.KeyFile
	case TLSSelfSigned:
		dir := filepath.Join(cfg.DataDir, "tls")
		certFile, keyFile = filepath.Join(dir, api.TLSCertFile), filepath.Join(dir, "key.pem")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := selfSign(dir, certFile, keyFile, cfg.ControlAddr); err != nil {
				return nil, fmt.Errorf("%w: generating a self-signed certificate: %w", ErrDataDir, err)
			}
		}
	default:
		return nil, fmt.Errorf("%w: control_tls.mode %q: want off, self-signed or files", ErrConfig, c.Mode)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: control TLS certificate: %w", ErrConfig, err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	log.Info("control API uses TLS", "certificate", certFile, "sha256_fingerprint", hex.EncodeToString(sum[:]))
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// selfSign writes a 10-year ECDSA P-256 certificate for the control
// address, loopback and the host name.
func selfSign(dir, certFile, keyFile, addr string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "sluiced control API", Organization: []string{"Sluice"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
