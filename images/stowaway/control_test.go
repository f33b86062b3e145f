package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestControlSocket(t *testing.T) {
	s := startServer(t)
	port := freeForwardPort(t)
	c, err := net.Dial("unix", filepath.Join(s.dir, "control"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	replies := bufio.NewScanner(c)
	ask := func(line string) map[string]any {
		t.Helper()
		if _, err := fmt.Fprintln(c, line); err != nil {
			t.Fatal(err)
		}
		if !replies.Scan() {
			t.Fatalf("no answer to %s: %v", line, replies.Err())
		}
		var reply map[string]any
		if err := json.Unmarshal(replies.Bytes(), &reply); err != nil {
			t.Fatalf("answer to %s is not JSON: %s", line, replies.Text())
		}
		return reply
	}
	wantForwards := fmt.Sprintf(`[{"address":"198.18.0.2","port":%d,"sources":["10.244.0.5","10.244.0.7"]}]`, port)

	set := fmt.Sprintf(`{"forwards": [{"port": %d, "address": "198.18.0.2", "sources": ["10.244.0.7", "10.244.0.5"]}]}`, port)
	if reply := ask(set); reply["ok"] != true || len(reply) != 1 {
		t.Fatalf("good request: %v", reply)
	}
	if got := ask(`{"get": "forwards"}`); mustJSON(t, got["forwards"]) != wantForwards {
		t.Fatalf("get: %v, want %s", got, wantForwards)
	}
	for _, bad := range []string{
		`{"forwards": [{"port": 20001, "address": "198.18.0.2"`,
		`not json`,
		`{"forwards": [{"port": 8080, "address": "198.18.0.2", "sources": []}]}`,
		`{"forwards": [{"port": 20001, "address": "10.1.2.3", "sources": []}]}`,
		`{"forwards": [{"port": 20001, "address": "198.18.0.2", "sources": ["somewhere"]}]}`,
		`{"forwards": [{"port": "20001", "address": "198.18.0.2", "sources": []}]}`,
		`{"forwards": [], "get": "forwards"}`,
		`{"forward": []}`,
		`{"get": "peers"}`,
		`{}`,
		`{"forwards": []} {"forwards": []}`,
	} {
		reply := ask(bad)
		msg, ok := reply["error"].(string)
		if !ok || len(reply) != 1 || msg == "" || strings.Contains(msg, "\n") {
			t.Errorf("%s: %v, want one error line", bad, reply)
		}
	}
	if got := ask(`{"get": "forwards"}`); mustJSON(t, got["forwards"]) != wantForwards {
		t.Fatalf("a bad request changed the forwards: %v", got)
	}
	if reply := ask(`{"forwards": []}`); reply["ok"] != true {
		t.Fatalf("clearing: %v", reply)
	}
	if got := ask(`{"get": "forwards"}`); mustJSON(t, got["forwards"]) != `[]` {
		t.Fatalf("get after clearing: %v", got)
	}
	if !strings.Contains(s.log.String(), "forwards set") {
		t.Errorf("no log line for the forwards:\n%s", s.log)
	}
}

func mustJSON(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
