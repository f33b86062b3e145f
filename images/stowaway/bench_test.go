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
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
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
		os.Exit(runProfiled(cfg))
	}
	os.Exit(m.Run())
}

// runProfiled runs the server, writing CPU and allocation profiles to the files that
// STOWAWAY_CPU_PROFILE and STOWAWAY_MEM_PROFILE name, if set.
func runProfiled(cfg Config) int {
	if name := os.Getenv("STOWAWAY_CPU_PROFILE"); name != "" {
		if f, err := os.Create(name); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if name := os.Getenv("STOWAWAY_MEM_PROFILE"); name != "" {
		// SIGUSR1 (from the benchmark, right after a transfer) writes the heap profile.
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			for range usr1 {
				if f, err := os.Create(name); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				fmt.Fprintf(os.Stderr, "heap: inuse %d MiB, idle %d MiB, released %d MiB, sys %d MiB, stacks %d MiB, GCs %d, mallocs %d, allocated %d MiB\n",
					m.HeapInuse>>20, m.HeapIdle>>20, m.HeapReleased>>20, m.Sys>>20, m.StackInuse>>20, m.NumGC, m.Mallocs, m.TotalAlloc>>20)
			}
		}()
	}
	return run(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
}

// tcpSink serves TCP on loopback: it reads a connection to its end, then answers the count.
func tcpSink(t testing.TB) netip.AddrPort {
	return tcpServer(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		_ = binary.Write(c, binary.BigEndian, n)
	})
}

// tcpSource serves TCP on loopback: it reads a count, sends that many bytes and closes.
func tcpSource(t testing.TB) netip.AddrPort {
	return tcpServer(t, func(c *net.TCPConn) {
		var n int64
		if binary.Read(c, binary.BigEndian, &n) != nil {
			return
		}
		chunk := make([]byte, 64<<10)
		for ; n > 0; n -= int64(len(chunk)) {
			if _, err := c.Write(chunk[:min(n, int64(len(chunk)))]); err != nil {
				return
			}
		}
	})
}

// upload sends n chunks of 64 KiB from c through the tunnel to a sink in the pod and waits until
// all have arrived.
func upload(b *testing.B, c *testClient, chunks int) {
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

// download has c receive n chunks of 64 KiB from a source in the pod through the tunnel.
func download(b *testing.B, c *testClient, chunks int) {
	conn := c.mustDial(b, tcpSource(b))
	want := int64(chunks) << 16
	b.SetBytes(64 << 10)
	b.ReportAllocs()
	b.ResetTimer()
	if err := binary.Write(conn, binary.BigEndian, want); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	got, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{conn}, buf)
	if err != nil || got != want {
		b.Fatalf("got %d bytes of %d: %v", got, want, err)
	}
	b.StopTimer()
}

// BenchmarkTCPThroughput: bulk TCP between a client's stack and a sink or source in the pod
// (loopback) that the server dials, both ends of the tunnel in this process; WireGuard's
// datagrams go by UDP, or by a TCP stream (the second transport).
func BenchmarkTCPThroughput(b *testing.B) {
	for _, dir := range []struct {
		name string
		run  func(*testing.B, *testClient, int)
	}{{"upload", upload}, {"download", download}} {
		b.Run(dir.name, func(b *testing.B) {
			s := startServer(b)
			dir.run(b, startClient(b, s, "198.18.0.2"), b.N)
		})
		b.Run(dir.name+"-stream", func(b *testing.B) {
			streamPort := freeTCPPort(b)
			s := startServer(b, func(cfg *Config) { cfg.StreamPort = streamPort })
			bind := newSwitchingBind(b, s, streamPort)
			bind.streamOnly = true
			dir.run(b, startClientWith(b, s, "198.18.0.2", bind, 1340), b.N)
		})
	}
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

// BenchmarkServerProcess: bulk TCP as BenchmarkTCPThroughput, through a server in a process of
// its own (this binary, see TestMain), whose CPU time and resident memory it reports: right
// after the transfer, and after 10 s of quiet (the collector and scavenger at work).
func BenchmarkServerProcess(b *testing.B) {
	for _, dir := range []struct {
		name string
		run  func(*testing.B, *testClient, int)
	}{{"upload", upload}, {"download", download}} {
		b.Run(dir.name, func(b *testing.B) {
			s := startServerProcess(b)
			c := startClient(b, s.testServer, "198.18.0.2")
			cpuBefore := s.cpu(b)
			dir.run(b, c, b.N)
			cpu := s.cpu(b) - cpuBefore
			b.ReportMetric(cpu.Seconds()*1e3/(float64(b.N)*64/1024), "server-cpu-ms/MiB")
			b.ReportMetric(s.rssMiB(b), "rss-MiB")
			if os.Getenv("STOWAWAY_MEM_PROFILE") != "" {
				_ = s.cmd.Process.Signal(syscall.SIGUSR1)
				time.Sleep(500 * time.Millisecond)
			}
			if os.Getenv("STOWAWAY_IDLE_RSS") != "" {
				time.Sleep(10 * time.Second)
				b.ReportMetric(s.rssMiB(b), "rss-idle-MiB")
				if os.Getenv("STOWAWAY_MEM_PROFILE") != "" {
					_ = s.cmd.Process.Signal(syscall.SIGUSR1)
					time.Sleep(500 * time.Millisecond)
				}
			}
		})
	}
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
	if os.Getenv("STOWAWAY_SERVER_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
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
