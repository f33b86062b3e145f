// testserver is the test workload of gefyra's development cluster: one static binary that serves
// HTTP, a line-based TCP echo and a UDP echo, and also acts as their client, so that tests need no
// curl, netcat or python inside images.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(args)
	case "get":
		err = get(args)
	case "tcp-send":
		err = send("tcp", args)
	case "udp-send":
		err = send("udp", args)
	case "latency":
		err = latency(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  testserver serve [--http :8080] [--tcp :9000] [--udp :9001]
  testserver get URL [--timeout 5s]
  testserver tcp-send ADDR LINE
  testserver udp-send ADDR MESSAGE
  testserver latency URL COUNT     (prints p50 and p99 in ms, one new connection per request)`)
	os.Exit(2)
}

// identity names the answering instance: the MESSAGE variable if set, else the host name.
func identity() string {
	if m := os.Getenv("MESSAGE"); m != "" {
		return m
	}
	h, _ := os.Hostname()
	return h
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	httpAddr := fs.String("http", ":8080", "HTTP listen address (empty: off)")
	tcpAddr := fs.String("tcp", ":9000", "TCP line echo listen address (empty: off)")
	udpAddr := fs.String("udp", ":9001", "UDP echo listen address (empty: off)")
	_ = fs.Parse(args)
	errs := make(chan error, 3)
	if *httpAddr != "" {
		go func() { errs <- serveHTTP(*httpAddr) }()
	}
	if *tcpAddr != "" {
		go func() { errs <- serveTCP(*tcpAddr) }()
	}
	if *udpAddr != "" {
		go func() { errs <- serveUDP(*udpAddr) }()
	}
	log.Printf("serving as %q: http %s, tcp %s, udp %s", identity(), *httpAddr, *tcpAddr, *udpAddr)
	return <-errs
}

func serveHTTP(addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/env", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, strings.Join(os.Environ(), "\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s path=%s\n", identity(), r.URL.Path)
	})
	return http.ListenAndServe(addr, mux)
}

func serveTCP(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			sc := bufio.NewScanner(conn)
			for sc.Scan() {
				fmt.Fprintf(conn, "%s echo: %s\n", identity(), sc.Text())
			}
		}()
	}
}

func serveUDP(addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		reply := fmt.Sprintf("%s echo: %s", identity(), buf[:n])
		_, _ = pc.WriteTo([]byte(reply), from)
	}
}

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "request timeout")
	if len(args) < 1 {
		usage()
	}
	url := args[0]
	_ = fs.Parse(args[1:])
	client := http.Client{Timeout: *timeout}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

func send(network string, args []string) error {
	if len(args) != 2 {
		usage()
	}
	conn, err := net.DialTimeout(network, args[0], 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := args[1]
	if network == "tcp" {
		msg += "\n"
	}
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	fmt.Println(strings.TrimRight(string(buf[:n]), "\n"))
	return nil
}

func latency(args []string) error {
	if len(args) != 2 {
		usage()
	}
	count, err := strconv.Atoi(args[1])
	if err != nil || count < 1 {
		return fmt.Errorf("COUNT must be a positive number")
	}
	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	samples := make([]float64, 0, count)
	for i := 0; i < count; i++ {
		start := time.Now()
		resp, err := client.Get(args[0])
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		samples = append(samples, float64(time.Since(start).Microseconds())/1000)
	}
	sort.Float64s(samples)
	pick := func(q float64) float64 { return samples[int(q*float64(len(samples)-1))] }
	fmt.Printf("p50=%.3f p99=%.3f\n", pick(0.5), pick(0.99))
	return nil
}
