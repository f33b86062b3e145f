package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"strings"
)

// maxControlLine bounds one request (some ten thousand bridges).
const maxControlLine = 1 << 20

// controlRequest is one line on the control socket: exactly one of its fields.
//
//	{"forwards": [{"port": 20001, "address": "198.18.0.2", "sources": ["10.244.0.7"]}]}
//	{"get": "forwards"}
type controlRequest struct {
	Forwards *[]Forward `json:"forwards"`
	Get      string     `json:"get"`
}

// controlResponse is the line that answers a request.
type controlResponse struct {
	OK       bool       `json:"ok,omitempty"`
	Error    string     `json:"error,omitempty"`
	Forwards *[]Forward `json:"forwards,omitempty"`
}

// serveControl answers requests on ln (newline-delimited JSON, any number per connection) until
// ln is closed.
func serveControl(ln net.Listener, f *forwards) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go handleControl(c, f)
	}
}

func handleControl(c net.Conn, f *forwards) {
	defer c.Close()
	lines := bufio.NewScanner(c)
	lines.Buffer(make([]byte, 0, 4096), maxControlLine)
	enc := json.NewEncoder(c) // writes one line per response
	for lines.Scan() {
		line := bytes.TrimSpace(lines.Bytes())
		if len(line) == 0 {
			continue
		}
		if enc.Encode(answer(line, f)) != nil {
			return
		}
	}
	if lines.Err() != nil {
		_ = enc.Encode(controlResponse{Error: "request too long or unreadable"})
	}
}

// answer carries out one request; a request that fails changes nothing.
func answer(line []byte, f *forwards) controlResponse {
	var req controlRequest
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return controlResponse{Error: "malformed request: " + oneLine(err)}
	}
	if dec.More() {
		return controlResponse{Error: "malformed request: more than one JSON value on the line"}
	}
	switch {
	case req.Forwards != nil && req.Get == "":
		if err := f.set(*req.Forwards); err != nil {
			return controlResponse{Error: oneLine(err)}
		}
		return controlResponse{OK: true}
	case req.Forwards == nil && req.Get == "forwards":
		list := f.get()
		return controlResponse{Forwards: &list}
	}
	return controlResponse{Error: `a request is {"forwards": [...]} or {"get": "forwards"}`}
}

// oneLine is err's message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
