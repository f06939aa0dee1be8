// Command ctrsrv is the container image's program in the end-to-end
// tests: an HTTP server on :8080 that names its task.
//
// With arguments "-relay ADDR URL" it serves on ADDR instead, answering
// every request with "relay <its task>: " and the body of a GET of URL
// (pods: a container reaching its neighbour on 127.0.0.1).
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "-relay" {
		cl := &http.Client{Timeout: 5 * time.Second}
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			resp, err := cl.Get(os.Args[3])
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			fmt.Fprintf(w, "relay %s: %s", os.Getenv("MESOS_TASK_ID"), b)
		})
		log.Fatal(http.ListenAndServe(os.Args[2], nil))
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n", os.Getenv("MESOS_TASK_ID"))
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
