// Command weftsrv is the static test server baked into FROM-scratch images
// by the Docker executor tests and bench.
//
//	weftsrv serve ADDR     HTTP on ADDR: / answers "ok <hostname>", /env/NAME
//	                       the variable; exits 0 on SIGTERM after printing it
//	weftsrv exit N         prints to stdout and stderr, exits N
//	weftsrv alloc          allocates and touches memory until killed
//	weftsrv stubborn       ignores SIGTERM, sleeps
//	weftsrv append LINE FILE...  appends LINE to each FILE, prints each
//	                       file's content, exits 0
//	sh -c "true|false|exit N"   (installed as /bin/sh as well)
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	// Installed as /bin/sh too: "sh -c CMD" runs CMD as weftsrv arguments,
	// with "true" and "false", so COMMAND checks can be tested without a
	// real shell in a FROM-scratch image.
	if filepath.Base(os.Args[0]) == "sh" {
		if len(os.Args) < 3 || os.Args[1] != "-c" {
			fmt.Fprintln(os.Stderr, "sh: only -c CMD")
			os.Exit(2)
		}
		switch f := strings.Fields(os.Args[2]); {
		case len(f) == 1 && f[0] == "true":
			os.Exit(0)
		case len(f) == 1 && f[0] == "false":
			os.Exit(1)
		default:
			os.Args = append([]string{"weftsrv"}, f...)
		}
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: weftsrv serve ADDR | exit N | alloc | stubborn")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		addr := ":8080"
		if len(os.Args) > 2 {
			addr = os.Expand(os.Args[2], os.Getenv)
		}
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "ok %s\n", host)
		})
		http.HandleFunc("/env/", func(w http.ResponseWriter, r *http.Request) {
			v, ok := os.LookupEnv(strings.TrimPrefix(r.URL.Path, "/env/"))
			if !ok {
				http.NotFound(w, r)
				return
			}
			fmt.Fprint(w, v)
		})
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		go func() {
			<-sig
			fmt.Println("got SIGTERM, exiting")
			os.Exit(0)
		}()
		fmt.Println("serving on", addr)
		fmt.Fprintln(os.Stderr, "stderr works")
		if err := http.ListenAndServe(addr, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "append":
		for _, name := range os.Args[3:] {
			f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Fprintln(f, os.Args[2])
			f.Close()
			b, _ := os.ReadFile(name)
			fmt.Printf("%s: %q\n", name, b)
		}
	case "exit":
		n, _ := strconv.Atoi(os.Args[2])
		fmt.Println("to stdout")
		fmt.Fprintln(os.Stderr, "to stderr")
		os.Exit(n)
	case "alloc":
		var keep [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = byte(i)
			}
			keep = append(keep, b)
			if len(keep)%16 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		time.Sleep(time.Hour)
	}
}
