package main

// Files sealed to this agent (TLS keys of HTTPS ports; see
// gefyra/plugins/interceptor_nginx/sealing.py): the agent makes an X25519 key pair when it starts,
// sends the public half with each request for its configuration, and opens what comes sealed to
// it. The private half stays in memory.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"regexp"
)

const sealInfo = "gefyra carrier files v1"

type sealKey struct{ private *ecdh.PrivateKey }

func newSealKey() (*sealKey, error) {
	private, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &sealKey{private: private}, nil
}

// public is what the agent sends: its public key, URL-safe base64.
func (k *sealKey) public() string {
	return base64.RawURLEncoding.EncodeToString(k.private.PublicKey().Bytes())
}

// open returns what was sealed to this key as the file name.
func (k *sealKey) open(name, text string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil || len(raw) < 32+12+16 {
		return nil, errors.New("not a sealed file")
	}
	ephemeral, err := ecdh.X25519().NewPublicKey(raw[:32])
	if err != nil {
		return nil, err
	}
	shared, err := k.private.ECDH(ephemeral)
	if err != nil {
		return nil, err
	}
	salt := append(append([]byte{}, raw[:32]...), k.private.PublicKey().Bytes()...)
	key, err := hkdf.Key(sha256.New, shared, salt, sealInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return gcm.Open(nil, raw[32:44], raw[44:], []byte(name))
}

// sealedName is what a sealed file may be called: a file of the working directory's tls/.
var sealedName = regexp.MustCompile(`^tls/[0-9]{1,5}\.(crt|key|ca)$`)

// writeSealed opens every file and writes it into dir (readable by this user only).
func writeSealed(k *sealKey, dir string, files map[string]string) error {
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return err
	}
	for name, text := range files {
		if !sealedName.MatchString(name) {
			return errors.New("a sealed file with a name outside tls/: " + name)
		}
		data, err := k.open(name, text)
		if err != nil {
			return errors.New(name + ": cannot be opened (" + err.Error() + ")")
		}
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// pruneSealed removes the files of earlier configurations that the one applied names no more.
func pruneSealed(dir string, files map[string]string) {
	tlsDir := filepath.Join(dir, "tls")
	entries, err := os.ReadDir(tlsDir)
	if err != nil {
		return
	}
	for _, entry := range entries {
		if _, named := files["tls/"+entry.Name()]; !named {
			_ = os.Remove(filepath.Join(tlsDir, entry.Name()))
		}
	}
}
