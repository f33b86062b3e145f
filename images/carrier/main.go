// gefyra-carrier is the entrypoint of the carrier image: it runs nginx and feeds it the forwarding
// rules that it fetches from gefyra's operator, so the operator needs no exec rights in bridged
// pods. carrier takes the place of the bridged container in place and so runs under that
// container's securityContext: any uid, maybe a read-only root filesystem and no capabilities.
// Hence everything it writes lives in one working directory, preferably in /dev/shm.
//
// Protocol (a long poll): GET CONFIG_URL?have=VERSION&container=NAME_OR_ID&ip=POD_IP&key=KEY, where VERSION
// is what runs ("" at first) and the container tells two carriers of one pod apart. The operator
// answers by the connection's source address; ip is the pod's own report of its address, which
// only a stand-in for the operator uses where a network translates the source (gefyra.testing).
// key is the agent's public key (sealing.go): files that must not cross the network in the clear
// (TLS keys) come sealed to it.
// 200 {"version", "stream", "http", "sealed"}: the texts for nginx's stream and http blocks, applied
// at once, and the sealed files that they name;
// 304: nothing new (the operator held the request); anything else or no answer: ask again shortly.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// The pod spec is the replaced container's, so the operator cannot set an environment for
	// carrier: the default must be right. GEFYRA_CARRIER_CONFIG_URL is for tests.
	defaultConfigURL = "http://gefyra-operator.gefyra.svc:8080/carrier/v1/config"
	nginxBin         = "/usr/sbin/nginx"
	// Loaded by its absolute path: /etc/nginx/modules-enabled names it relative to nginx's default
	// prefix, which -p replaces.
	streamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

	requestTimeout = 35 * time.Second // the operator holds a request up to about 25 s
	retryPause     = 500 * time.Millisecond
	refusedPause   = time.Second // after a configuration that nginx -t refused
	applyTimeout   = 5 * time.Second
	stopTimeout    = 2 * time.Second
	quietPeriod    = 30 * time.Second
	// A reload starts its new worker within 15-50 ms here; without one after this long, nginx -t
	// is asked whether the master refused the configuration.
	suspectAfter = time.Second
	appliedPoll  = 10 * time.Millisecond
)

// workDirs in order of preference, each with the container's name or ID appended (two carriers of
// one pod share its /dev/shm). /dev/shm is a tmpfs that the runtime mounts writable in every
// container, even with a read-only root filesystem; /tmp may be an emptyDir of the original pod.
var workDirs = []string{"/dev/shm/gefyra-carrier", "/tmp/gefyra-carrier", "/var/run/gefyra-carrier"}

func main() {
	// The original container's args arrive in os.Args; carrier has no use for them.
	log.SetPrefix("gefyra-carrier: ")
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	container := containerRef()
	dir, err := workDir(container)
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
	key, err := newSealKey()
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
	n := &nginx{dir: dir, key: key}
	exited, err := n.start()
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
	log.Printf("nginx started (pid %d) in %s", n.cmd.Process.Pid, dir)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go poll(n, configURL(), container)
	if relay := os.Getenv("GEFYRA_CARRIER_COPIES"); relay != "" {
		go serveCopies(relay)
	}

	select {
	case err := <-exited:
		log.Printf("nginx exited: %v", err)
		os.Exit(1) // the kubelet restarts the container
	case sig := <-signals:
		if drain := drainTime(); drain > 0 {
			// A router: kube-proxy lets go of it meanwhile; then nginx finishes what is in flight.
			log.Printf("%v: serving %v more, then stopping nginx gracefully", sig, drain)
			time.Sleep(drain)
			_ = n.cmd.Process.Signal(syscall.SIGQUIT)
			err := <-exited
			log.Printf("nginx stopped: %v", err)
			os.Exit(0)
		}
		log.Printf("%v: stopping nginx", sig)
		// Fast shutdown: the kubelet stops carrier only to put the original container back, and
		// a graceful one would wait out open connections (up to the pod's grace period).
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			log.Printf("nginx did not stop within %v; leaving anyway", stopTimeout)
		}
		os.Exit(0)
	}
}

// drainTime is GEFYRA_CARRIER_DRAIN_SECONDS (set on routers only): how long a stopping router
// keeps serving before nginx ends gracefully.
func drainTime() time.Duration {
	seconds, err := strconv.Atoi(os.Getenv("GEFYRA_CARRIER_DRAIN_SECONDS"))
	if err != nil || seconds <= 0 || seconds > 300 {
		return 0
	}
	return time.Duration(seconds) * time.Second
}

// containerRef tells the operator which container of its pod this carrier runs in (a pod may run
// two, one per bridged container): the container's name, as the kubelet's mount of its
// termination log shows it (.../containers/NAME/...), else its ID from the cgroup path; "" if
// neither can be read.
func containerRef() string {
	if info, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 5 || fields[4] != "/dev/termination-log" {
				continue
			}
			parts := strings.Split(fields[3], "/")
			for i := len(parts) - 2; i >= 0; i-- {
				if parts[i] == "containers" && containerName.MatchString(parts[i+1]) {
					return parts[i+1]
				}
			}
		}
	}
	if cgroup, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		if ids := containerID.FindAllString(string(cgroup), -1); len(ids) > 0 {
			return ids[len(ids)-1]
		}
	}
	return ""
}

var (
	containerName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	containerID   = regexp.MustCompile(`[0-9a-f]{64}`)
)

// workDir is the first candidate directory that can be created and written to.
func workDir(container string) (string, error) {
	var problems []string
	for _, dir := range workDirs {
		if container != "" {
			dir += "-" + container
		}
		probe := filepath.Join(dir, ".probe")
		err := os.MkdirAll(dir, 0o755)
		if err == nil {
			err = os.WriteFile(probe, nil, 0o644)
		}
		if err == nil {
			_ = os.Remove(probe)
			return dir, nil
		}
		problems = append(problems, err.Error())
	}
	return "", fmt.Errorf("no writable working directory: %s", strings.Join(problems, "; "))
}

func configURL() *url.URL {
	raw := os.Getenv("GEFYRA_CARRIER_CONFIG_URL")
	if raw == "" {
		raw = defaultConfigURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		log.Printf("GEFYRA_CARRIER_CONFIG_URL: %v", err)
		os.Exit(1)
	}
	return u
}

type config struct {
	Version string `json:"version"`
	Stream  string `json:"stream"`
	HTTP    string `json:"http"`
	// Files sealed to this agent's key (sealing.go), by name under the working directory.
	Sealed map[string]string `json:"sealed"`
}

// poll asks the operator for configuration, forever.
func poll(n *nginx, base *url.URL, container string) {
	client := &http.Client{
		Timeout: requestTimeout,
		// The pod keeps the original container's environment: a HTTP_PROXY meant for the
		// application must not carry carrier's requests to a cluster-internal Service.
		Transport: &http.Transport{
			Proxy:           nil,
			DialContext:     (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			IdleConnTimeout: time.Minute,
		},
	}
	quiet := quietLog{}
	n.waitStarted()
	have := ""
	for {
		cfg, err := fetch(client, base, container, have, n.key.public())
		switch {
		case err != nil:
			quiet.print(err.Error())
			time.Sleep(retryPause)
		case cfg == nil: // 304
		default:
			if err := n.apply(cfg); err != nil {
				quiet.print(err.Error())
				time.Sleep(refusedPause)
				continue
			}
			have = cfg.Version
		}
	}
}

// ownAddress is the pod's first IPv4 address that is not a loopback one ("" if it has none).
func ownAddress() string {
	addresses, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addresses {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

// fetch returns the new configuration, nil for 304, or an error for anything else.
func fetch(client *http.Client, base *url.URL, container, have, key string) (*config, error) {
	u := *base
	q := u.Query()
	q.Set("have", have)
	if container != "" {
		q.Set("container", container)
	}
	if ip := ownAddress(); ip != "" {
		q.Set("ip", ip)
	}
	q.Set("key", key)
	u.RawQuery = q.Encode()
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if token := podToken(); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
		var cfg config
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&cfg); err != nil {
			return nil, fmt.Errorf("%s: bad configuration: %v", base, err)
		}
		if cfg.Version == "" {
			// "" means "nothing applied yet": taking it would ask for the same answer again at once.
			return nil, fmt.Errorf("%s: configuration without a version", base)
		}
		return &cfg, nil
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return nil, fmt.Errorf("%s: %s", base, resp.Status)
	}
}

// podToken is the token at GEFYRA_CARRIER_TOKEN (set on routers only: a token for the operator's
// audience that says which pod asks, read at each request since the kubelet renews it), "" if none.
func podToken() string {
	file := os.Getenv("GEFYRA_CARRIER_TOKEN")
	if file == "" {
		return ""
	}
	b, err := os.ReadFile(file)
	if err != nil || len(b) > 8192 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// quietLog prints a message at most once per quietPeriod, so that a missing operator (asked
// twice a second) does not flood the log.
type quietLog map[string]time.Time

func (q quietLog) print(msg string) {
	now := time.Now()
	for m, at := range q {
		if now.Sub(at) >= quietPeriod {
			delete(q, m)
		}
	}
	if _, seen := q[msg]; !seen {
		q[msg] = now
		log.Print(msg)
	}
}

// nginx is the nginx master process and its working directory.
type nginx struct {
	dir          string
	cmd          *exec.Cmd
	stream, http string // what the files hold now
	key          *sealKey
	refused      string // the last version that nginx refused, until one is taken
}

func (n *nginx) path(name string) string { return filepath.Join(n.dir, name) }

func (n *nginx) start() (<-chan error, error) {
	// The directory may survive a restart of the container (/dev/shm belongs to the pod): an old
	// pid file would make waitStarted believe too early.
	_ = os.Remove(n.path("nginx.pid"))
	if err := n.write("", ""); err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.path("nginx.conf"), []byte(n.mainConfig()), 0o644); err != nil {
		return nil, err
	}
	n.cmd = exec.Command(nginxBin, n.args()...)
	n.cmd.Stdout, n.cmd.Stderr = os.Stdout, os.Stderr
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- n.cmd.Wait() }()
	return exited, nil
}

// args makes nginx read only what is in the working directory. -e stderr: nginx opens its error
// log before it reads the configuration (Debian's nginx is built with stderr as default anyway).
func (n *nginx) args(extra ...string) []string {
	return append(extra, "-e", "stderr", "-p", n.dir+"/", "-c", n.path("nginx.conf"))
}

func (n *nginx) mainConfig() string {
	d := n.dir
	return fmt.Sprintf(`# Written by gefyra-carrier; the operator's configuration goes into stream.conf and http.conf.
load_module %s;
daemon off;
worker_processes 1;
pid %s/nginx.pid;
error_log stderr notice;
%sevents {}
stream {
    include %s/stream.conf;
}
http {
    access_log off;
    client_body_temp_path %s/client_body;
    proxy_temp_path %s/proxy;
    fastcgi_temp_path %s/fastcgi;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;
    include %s/http.conf;
}
`, streamModule, d, userDirective(), d, d, d, d, d, d, d)
}

// userDirective: nginx started as root hands its temp directories to nobody (CAP_CHOWN), switches
// its worker to nobody (CAP_SETGID, CAP_SETUID) and may signal it (CAP_KILL). Root without these
// (capabilities dropped) keeps its worker as root instead: setgid and setuid to the ids it already
// has are allowed, only initgroups fails, with a harmless "[emerg] initgroups(root, 0) failed".
// Other uids keep their own, without any directive.
func userDirective() string {
	const capChown, capKill, capSetgid, capSetuid = 0, 5, 6, 7
	const needed = 1<<capChown | 1<<capKill | 1<<capSetgid | 1<<capSetuid
	if os.Geteuid() != 0 || effectiveCaps()&needed == needed {
		return ""
	}
	return "user root root;\n"
}

// effectiveCaps is CapEff of /proc/self/status (all bits set if it cannot be read: the default).
func effectiveCaps() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return ^uint64(0)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			if caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
				return caps
			}
		}
	}
	return ^uint64(0)
}

// waitStarted returns once nginx has written its pid file, which it does after installing its
// signal handlers: a SIGHUP before that would end it.
func (n *nginx) waitStarted() {
	want := strconv.Itoa(n.cmd.Process.Pid)
	for {
		if b, err := os.ReadFile(n.path("nginx.pid")); err == nil && strings.TrimSpace(string(b)) == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// write replaces stream.conf and http.conf, each atomically.
func (n *nginx) write(stream, http string) error {
	for name, text := range map[string]string{"stream.conf": stream, "http.conf": http} {
		tmp := n.path("." + name + ".tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, n.path(name)); err != nil {
			return err
		}
	}
	n.stream, n.http = stream, http
	return nil
}

// apply writes cfg and reloads nginx with it. nginx's master checks a configuration itself before it
// takes it, and keeps running the one it has if not, so carrier does not run nginx -t first (that
// took 10-30 ms of every switch on a small machine): only when no new worker shows within
// suspectAfter, and first for a version that was refused before, does nginx -t say whether and why
// the configuration is refused. A refused configuration is taken back from the files too, so that
// they always hold what runs.
func (n *nginx) apply(cfg *config) error {
	started := time.Now()
	oldStream, oldHTTP := n.stream, n.http
	if err := writeSealed(n.key, n.dir, cfg.Sealed); err != nil {
		return fmt.Errorf("version %s: %v", cfg.Version, err)
	}
	if err := n.write(cfg.Stream, cfg.HTTP); err != nil {
		return fmt.Errorf("version %s: %v", cfg.Version, err)
	}
	refused := func(why string) error {
		_ = n.write(oldStream, oldHTTP)
		n.refused = cfg.Version
		return fmt.Errorf("version %s refused by nginx -t: %s", cfg.Version, why)
	}
	if cfg.Version == n.refused { // no reload for what is known to fail: the master would log it again
		if why := n.test(); why != "" {
			return refused(why)
		}
	}
	before := n.workers()
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("version %s: reload: %v", cfg.Version, err)
	}
	ports := listenPorts(cfg.Stream + "\n" + cfg.HTTP)
	problem, why := n.waitApplied(before, ports)
	if why != "" {
		return refused(why)
	}
	n.refused = ""
	pruneSealed(n.dir, cfg.Sealed)
	if problem != "" {
		log.Printf("version %s: after %v, %s", cfg.Version, applyTimeout, problem)
	} else {
		// The time from the configuration's arrival to the new workers serving (benchmarks read it).
		log.Printf("version %s applied in %d ms (listening on %v)", cfg.Version, time.Since(started).Milliseconds(), ports)
	}
	return nil
}

// test is nginx -t of the files as they are: "" if nginx takes them, else why not, on one line.
func (n *nginx) test() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, nginxBin, n.args("-t", "-q")...).CombinedOutput()
	if err == nil {
		return ""
	}
	return fmt.Sprintf("(%v) %s", err, nginxErrors(out))
}

// nginxLogPrefix is the time and pid of an nginx log line: without them, the same refusal reads
// the same each time and is logged once per quietPeriod.
var nginxLogPrefix = regexp.MustCompile(`^\S+ \S+ (\[\w+\]) \d+#\d+: `)

// nginxErrors is the output of nginx -t on one line, without time, pid and its closing summary.
func nginxErrors(out []byte) string {
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasSuffix(line, " test failed") {
			lines = append(lines, nginxLogPrefix.ReplaceAllString(line, "$1 "))
		}
	}
	return strings.Join(lines, " | ")
}

// waitApplied waits until nginx runs a worker that was not there before the reload (the master
// starts one only once the new configuration is in place) and each port accepts connections.
// It says what is still missing when it gives up; or, when nginx -t refuses the configuration
// after suspectAfter without a new worker, why (the master has kept the one it runs).
func (n *nginx) waitApplied(before map[int]bool, ports []int) (problem, refused string) {
	start := time.Now()
	pending := append([]int(nil), ports...)
	newWorker, tested := false, false
	for {
		if !newWorker {
			now := n.workers()
			for pid := range now {
				newWorker = newWorker || !before[pid]
			}
			if newWorker {
				retire(before, now)
			}
		}
		if !newWorker && !tested && time.Since(start) >= suspectAfter {
			tested = true
			if why := n.test(); why != "" {
				return "", why
			}
		}
		// A port that accepted once is done: each connection is forwarded to the developer's
		// container, so carrier makes no more of them than it must.
		var still []int
		for _, port := range pending {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 200*time.Millisecond)
			if err != nil {
				still = append(still, port)
				continue
			}
			_ = conn.Close()
		}
		pending = still
		if newWorker && len(pending) == 0 {
			return "", ""
		}
		if time.Since(start) >= applyTimeout {
			var missing []string
			if !newWorker {
				missing = append(missing, "nginx has started no new worker (reload failed?)")
			}
			if len(pending) > 0 {
				missing = append(missing, fmt.Sprintf("ports %v do not accept connections", pending))
			}
			return strings.Join(missing, "; "), ""
		}
		time.Sleep(appliedPoll)
	}
}

// retire tells the workers of the configuration before a reload (those in before that are still in
// now) to finish what they serve and stop, as soon as a new worker runs. nginx's master does the
// same only 100 ms after it started the new workers ("allow new processes to start"), and until
// then old and new workers take connections from the same listening sockets (traced: a bridge
// that was gone still answered for 40 ms after both routers' new workers ran). The signal is the master's own (SIGQUIT:
// close the listeners, finish the connections); the master, whose signals wait while it pauses,
// sends it again and does not restart a worker that it has told to stop.
func retire(before, now map[int]bool) {
	for pid := range before {
		if now[pid] {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
	}
}

// workers are the pids of the nginx master's children.
func (n *nginx) workers() map[int]bool {
	found := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold anything, so parse after its last ')'.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(n.cmd.Process.Pid) {
			found[pid] = true
		}
	}
	return found
}

// listenRe finds "listen PORT ...;" and "listen ADDRESS:PORT ...;".
var listenRe = regexp.MustCompile(`\blisten\s+(?:[^\s;]*:)?(\d+)([^;]*);`)

// listenPorts are the TCP ports that a configuration text listens on, sorted, once each.
func listenPorts(text string) []int {
	seen := map[int]bool{}
	var ports []int
	for _, m := range listenRe.FindAllStringSubmatch(text, -1) {
		port, err := strconv.Atoi(m[1])
		if err != nil || seen[port] || strings.Contains(m[2], "udp") {
			continue
		}
		seen[port] = true
		ports = append(ports, port)
	}
	sort.Ints(ports)
	return ports
}
