// Command probe is the real node's smoke-test image (scripts/node-smoke): one static binary that serves, connects
// and asks, so that the checks need no shell, no libc and no DNS inside the pod.
//
//	probe serve ADDR           answer GET / with "ok <hostname>"
//	probe check NAME=TARGET... TARGET is tcp://host:port (connect), http://... (GET 200) or apiserver:/path
//	                           (GET through the pod's ServiceAccount token); prints "ok NAME" or "bad NAME: why"
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount/"

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: probe serve ADDR | probe check NAME=TARGET...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "ok %s\n", host) })
		fmt.Fprintln(os.Stderr, http.ListenAndServe(os.Args[2], nil))
		os.Exit(1)
	case "check":
		failed := false
		for _, arg := range os.Args[2:] {
			name, target, _ := strings.Cut(arg, "=")
			if err := check(target); err != nil {
				fmt.Printf("bad %s: %v\n", name, err)
				failed = true
			} else {
				fmt.Printf("ok %s\n", name)
			}
		}
		if failed {
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func check(target string) error {
	switch {
	case strings.HasPrefix(target, "tcp://"):
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(target, "tcp://"), 5*time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	case strings.HasPrefix(target, "apiserver:"):
		token, err := os.ReadFile(serviceAccount + "token")
		if err != nil {
			return err
		}
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		req, err := http.NewRequest(http.MethodGet, "https://"+net.JoinHostPort(host, port)+strings.TrimPrefix(target, "apiserver:"), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		// The pod's CA bundle is what an in-cluster client trusts; reading it proves it is mounted too.
		ca, err := os.ReadFile(serviceAccount + "ca.crt")
		if err != nil {
			return err
		}
		return get(req, ca)
	default:
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			return err
		}
		return get(req, nil)
	}
}

func get(req *http.Request, ca []byte) error {
	client := &http.Client{Timeout: 10 * time.Second}
	if ca != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
