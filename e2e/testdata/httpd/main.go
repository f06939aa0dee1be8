// Command httpd is the task the end-to-end tests run: an HTTP server on
// $PORT0 that writes its pid where the test finds it and turns unhealthy
// when the test drops a file named after its task id in the sick dir.
//
// Optional behaviour for the load-balancer tests: -headers adds /headers,
// which echoes the request head; -lines answers every line received on
// $PORT1 with "<task id> <line>"; -linger makes SIGTERM graceful: the task
// keeps serving for at least that long and until its $PORT1 connections are
// closed, as an app behind marathon-lb does to drain.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	pids := flag.String("pids", "", "directory for <task id>.pid files")
	sick := flag.String("sick", "", "directory where <task id> marks this task unhealthy")
	headers := flag.Bool("headers", false, "serve /headers, echoing the request's headers")
	lines := flag.Bool("lines", false, "answer each line on $PORT1 with \"<task id> <line>\"")
	linger := flag.Duration("linger", 0, "on SIGTERM keep serving this long and until $PORT1 connections close (0: exit at once)")
	flag.Parse()
	id := os.Getenv("MESOS_TASK_ID")
	if *pids != "" {
		_ = os.WriteFile(filepath.Join(*pids, id+".pid"), []byte(fmt.Sprint(os.Getpid())), 0o644)
	}
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if *sick != "" {
			if _, err := os.Stat(filepath.Join(*sick, id)); err == nil {
				http.Error(w, "sick", http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	if *headers {
		http.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s\n", id)
			keys := make([]string, 0, len(r.Header))
			for k := range r.Header {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				for _, v := range r.Header[k] {
					fmt.Fprintf(w, "%s: %s\n", k, v)
				}
			}
		})
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "%s %s\n", id, os.Getenv("MARATHON_APP_VERSION"))
	})

	var conns atomic.Int64 // open $PORT1 connections
	if *lines {
		l, err := net.Listen("tcp", ":"+os.Getenv("PORT1"))
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns.Add(1)
				go func() {
					defer conns.Add(-1)
					defer c.Close()
					sc := bufio.NewScanner(c)
					for sc.Scan() {
						if _, err := fmt.Fprintf(c, "%s %s\n", id, sc.Text()); err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	if *linger > 0 {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go func() {
			<-term
			time.Sleep(*linger)
			for conns.Load() > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			os.Exit(0)
		}()
	}
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT0"), nil))
}
