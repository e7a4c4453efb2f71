// Command echo is the test workload of the ktctl test cluster, and its test client.
//
// Server (default): HTTP on $HTTP_PORTS (default 8080,8081) speaking HTTP/1.1, h2c, WebSocket
// (path /ws) and gRPC (grpc.health.v1.Health/Check, answering with the pod name in header
// metadata), and a plain TCP echo on $TCP_PORT (default 9090). Every answer says which pod
// answered, so tests can tell the cluster's pods from the laptop.
//
// Client (for tests run inside pods): `echo client http|h2c|ws|grpc URL-or-ADDR [-H k:v]...`
// prints what the server answered as one JSON line.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

type answer struct {
	Pod       string              `json:"pod"`
	Namespace string              `json:"namespace"`
	Name      string              `json:"name"`
	Proto     string              `json:"proto"`
	Method    string              `json:"method,omitempty"`
	Path      string              `json:"path,omitempty"`
	Host      string              `json:"host,omitempty"`
	Port      string              `json:"port,omitempty"`
	Headers   map[string][]string `json:"headers,omitempty"`
	Message   string              `json:"message,omitempty"`
}

func identity() answer {
	pod := os.Getenv("POD_NAME")
	if pod == "" {
		pod, _ = os.Hostname()
	}
	return answer{Pod: pod, Namespace: os.Getenv("POD_NAMESPACE"), Name: os.Getenv("ECHO_NAME")}
}

func env(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "client" {
		os.Exit(runClient(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "sleep" {
		select {}
	}
	for _, port := range strings.Split(env("HTTP_PORTS", "8080,8081"), ",") {
		go serveHTTP(strings.TrimSpace(port))
	}
	serveTCPEcho(env("TCP_PORT", "9090"))
}

type healthServer struct {
	grpc_health_v1.UnimplementedHealthServer
}

func (healthServer) Check(ctx context.Context, _ *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	id := identity()
	md, _ := metadata.FromIncomingContext(ctx)
	pairs := []string{"x-pod", id.Pod, "x-name", id.Name}
	for _, v := range md.Get("version") {
		pairs = append(pairs, "x-echo-version", v)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(pairs...))
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}

func serveHTTP(port string) {
	grpcServer := grpc.NewServer()
	grpc_health_v1.RegisterHealthServer(grpcServer, healthServer{})
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) {
		a := identity()
		a.Proto, a.Port, a.Path = "websocket", port, "/ws"
		a.Headers = ws.Request().Header
		_ = websocket.JSON.Send(ws, a)
		for { // then echo every message back, prefixed with the pod name
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(ws, a.Pod+": "+msg); err != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a := identity()
		a.Proto, a.Method, a.Path, a.Host, a.Port, a.Headers = r.Proto, r.Method, r.URL.Path, r.Host, port, r.Header
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			a.Message = string(body)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Pod", a.Pod)
		_ = json.NewEncoder(w).Encode(a)
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			grpcServer.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	server := &http.Server{Addr: ":" + port, Handler: h2c.NewHandler(handler, &http2.Server{})}
	fmt.Printf("echo: http on :%s\n", port)
	if err := server.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func serveTCPEcho(port string) {
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	fmt.Printf("echo: tcp echo on :%s\n", port)
	for {
		conn, err := ln.Accept()
		if err != nil {
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}(conn)
	}
}

func runClient(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: echo client http|h2c|ws|grpc URL-or-ADDR [-H key:value]...")
		return 2
	}
	kind, target := args[0], args[1]
	headers := http.Header{}
	for i := 2; i+1 < len(args); i += 2 {
		if args[i] == "-H" {
			k, v, _ := strings.Cut(args[i+1], ":")
			headers.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out any
	var err error
	switch kind {
	case "http", "h2c":
		out, err = httpCall(ctx, kind, target, headers)
	case "ws":
		out, err = wsCall(target, headers)
	case "grpc":
		out, err = grpcCall(ctx, target, headers)
	default:
		err = fmt.Errorf("unknown client kind %q", kind)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo client:", err)
		return 1
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

func httpCall(ctx context.Context, kind, url string, headers http.Header) (any, error) {
	client := http.DefaultClient
	if kind == "h2c" {
		client = &http.Client{Transport: &http2.Transport{AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header = headers
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	return a, nil
}

func wsCall(url string, headers http.Header) (any, error) {
	cfg, err := websocket.NewConfig(url, "http://"+strings.SplitN(strings.TrimPrefix(url, "ws://"), "/", 2)[0])
	if err != nil {
		return nil, err
	}
	cfg.Header = headers
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	var hello answer
	if err := websocket.JSON.Receive(ws, &hello); err != nil {
		return nil, err
	}
	if err := websocket.Message.Send(ws, "ping"); err != nil {
		return nil, err
	}
	var reply string
	if err := websocket.Message.Receive(ws, &reply); err != nil {
		return nil, err
	}
	hello.Message = reply
	return hello, nil
}

func grpcCall(ctx context.Context, addr string, headers http.Header) (any, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	for k, vs := range headers {
		for _, v := range vs {
			ctx = metadata.AppendToOutgoingContext(ctx, strings.ToLower(k), v)
		}
	}
	var header metadata.MD
	resp, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{}, grpc.Header(&header))
	if err != nil {
		return nil, err
	}
	a := answer{Proto: "grpc", Message: resp.Status.String()}
	if v := header.Get("x-pod"); len(v) > 0 {
		a.Pod = v[0]
	}
	if v := header.Get("x-name"); len(v) > 0 {
		a.Name = v[0]
	}
	return a, nil
}
