package main

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain runs this test binary as a server process when STOWAWAY_TEST_SERVER is set (for
// measuring the server alone), configured from the environment as main is.
func TestMain(m *testing.M) {
	if os.Getenv("STOWAWAY_TEST_SERVER") != "" {
		cfg, err := configFromEnv(os.Getenv)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		cfg.AllowLoopback = true // the benchmark's sink is on loopback
		os.Exit(run(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil))))
	}
	os.Exit(m.Run())
}

// tcpSink serves TCP on loopback: it reads a connection to its end, then answers the count.
func tcpSink(t testing.TB) netip.AddrPort {
	return tcpServer(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		_ = binary.Write(c, binary.BigEndian, n)
	})
}

// bulk sends n chunks from c through the tunnel to a sink and waits until all have arrived.
func bulk(b *testing.B, c *testClient, chunks int) {
	conn := c.mustDial(b, tcpSink(b))
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for range chunks {
		if _, err := conn.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := conn.CloseWrite(); err != nil {
		b.Fatal(err)
	}
	var got int64
	if err := binary.Read(conn, binary.BigEndian, &got); err != nil || got != int64(chunks*len(chunk)) {
		b.Fatalf("the sink got %d bytes of %d: %v", got, chunks*len(chunk), err)
	}
	b.StopTimer()
}

// BenchmarkTCPThroughput: bulk TCP from a client's stack through the tunnel to a sink the
// server dials on loopback, both ends in this process.
func BenchmarkTCPThroughput(b *testing.B) {
	s := startServer(b)
	bulk(b, startClient(b, s, "198.18.0.2"), b.N)
}

// BenchmarkTCPRoundTrip: one byte to an echo server and back through the tunnel, on one
// connection; reports the median and 99th percentile.
func BenchmarkTCPRoundTrip(b *testing.B) {
	s := startServer(b)
	c := startClient(b, s, "198.18.0.2")
	conn := c.mustDial(b, tcpEcho(b))
	one := make([]byte, 1)
	times := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := conn.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, one); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkServerProcess: bulk TCP as BenchmarkTCPThroughput, to a server in a process of its
// own (this binary, see TestMain), whose CPU time and resident memory it reports: right after
// the transfer, and after 10 s of quiet (the collector and scavenger at work).
func BenchmarkServerProcess(b *testing.B) {
	s := startServerProcess(b)
	c := startClient(b, s.testServer, "198.18.0.2")
	cpuBefore := s.cpu(b)
	bulk(b, c, b.N)
	cpu := s.cpu(b) - cpuBefore
	b.ReportMetric(cpu.Seconds()*1e3/(float64(b.N)*64/1024), "server-cpu-ms/MiB")
	b.ReportMetric(s.rssMiB(b), "rss-MiB")
	time.Sleep(10 * time.Second)
	b.ReportMetric(s.rssMiB(b), "rss-idle-MiB")
}

type serverProcess struct {
	*testServer
	cmd *exec.Cmd
}

func startServerProcess(b *testing.B) *serverProcess {
	dir := b.TempDir()
	key := newKeyPair(b)
	keyFile := filepath.Join(dir, "private-key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key.private[:])+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	port := udp.LocalAddr().(*net.UDPAddr).Port
	udp.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "STOWAWAY_TEST_SERVER=1", "WG_RUN_DIR="+filepath.Join(dir, "run"),
		"WG_PRIVATE_KEY_FILE="+keyFile, "WG_LISTEN_PORT="+strconv.Itoa(port))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "run", "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the server process did not get ready")
		}
	}
	return &serverProcess{testServer: &testServer{dir: filepath.Join(dir, "run"), port: port, key: key}, cmd: cmd}
}

// cpu is the process's user and system time so far.
func (p *serverProcess) cpu(b *testing.B) time.Duration {
	text, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(text[strings.LastIndexByte(string(text), ')')+2:]))
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// rssMiB is the process's resident memory.
func (p *serverProcess) rssMiB(b *testing.B) float64 {
	text, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
