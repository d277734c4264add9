package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/store/bolt"
)

// TestServeRefusesBadDatabase starts keygate serve on databases it must not
// use. Each time it exits with status 1 and one line saying what is wrong
// and what to do, and leaves the file exactly as it was.
func TestServeRefusesBadDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	withData := func(t *testing.T, path string) {
		s, err := bolt.Open(path, bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for range 50 {
			if _, err := s.CreateAccount(context.Background(), "precious", 100); err != nil {
				t.Fatal(err)
			}
		}
	}
	overwrite := func(off, n int64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			withData(t, path)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := make([]byte, n)
			rand.Read(junk)
			if _, err := f.WriteAt(junk, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	rawUpdate := func(fn func(tx *bbolt.Tx) error) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			db, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(fn); err != nil {
				t.Fatal(err)
			}
		}
	}
	const leftAlone = "keygate left the file as it is"
	for _, c := range []struct {
		name     string
		prepare  func(t *testing.T, path string)
		want     []string
		asNobody bool // run keygate without root's right to ignore permissions
	}{
		{"text file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("name,balance\nacme,100\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"is not a bbolt database or is corrupt", leftAlone, "restore it from a backup"}, false},
		{"truncated", func(t *testing.T, path string) {
			withData(t, path)
			if err := os.Truncate(path, 12<<10); err != nil {
				t.Fatal(err)
			}
		}, []string{"is not a bbolt database or is corrupt", leftAlone}, false},
		{"both meta pages overwritten", overwrite(0, 8<<10), []string{"is not a bbolt database or is corrupt", leftAlone}, false},
		{"data pages overwritten", overwrite(8<<10, 256<<10), []string{leftAlone}, false},
		{"another program's bbolt file", rawUpdate(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket([]byte("widgets"))
			if err != nil {
				return err
			}
			return b.Put([]byte("w1"), []byte("blue"))
		}), []string{`not a keygate database: it has a bucket "widgets"`, leftAlone}, false},
		{"newer schema", func(t *testing.T, path string) {
			withData(t, path)
			rawUpdate(func(tx *bbolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint64(nil, 2))
			})(t, path)
		}, []string{"schema version 2 is newer than this keygate supports (1); upgrade keygate", leftAlone}, false},
		{"directory without write permission", func(t *testing.T, path string) {
			if err := os.Chmod(filepath.Dir(path), 0o555); err != nil {
				t.Fatal(err)
			}
		}, []string{"permission denied", "run keygate as a user who may read and write"}, true},
		{"file without read permission", func(t *testing.T, path string) {
			withData(t, path)
			if err := os.Chmod(path, 0o200); err != nil {
				t.Fatal(err)
			}
		}, []string{"permission denied", "run keygate as a user who may read and write"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "keygate.db")
			c.prepare(t, path)
			before, _ := os.ReadFile(path)

			bin, err := keygateBinary()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "serve", "--db", path, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
			cmd.Env = cleanEnv()
			if c.asNobody {
				unprivileged(t, cmd, bin, path)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("keygate serve: %v, want exit status 1; stderr:\n%s", err, &stderr)
			}
			line := strings.TrimSuffix(stderr.String(), "\n")
			t.Log(line)
			if strings.Contains(line, "\n") || stdout.Len() > 0 {
				t.Errorf("want one line on stderr and nothing on stdout; got stderr:\n%s\nstdout:\n%s", &stderr, &stdout)
			}
			for _, want := range append(c.want, path) {
				if !strings.Contains(line, want) {
					t.Errorf("message %q does not say %q", line, want)
				}
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Error("the refused file was changed")
			}
			if _, err := os.Stat(path + ".admin-token"); err == nil {
				t.Error("an admin token was created beside a refused database")
			}
		})
	}
}

// unprivileged makes cmd run as nobody when the test runs as root, who may
// read and write anything, and lets nobody reach the binary and the
// database's directory.
func unprivileged(t *testing.T, cmd *exec.Cmd, bin, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	for _, d := range []string{filepath.Dir(bin), filepath.Dir(filepath.Dir(path)), filepath.Dir(filepath.Dir(filepath.Dir(path)))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
}
