// Command ctrsrv is the container image's program in the end-to-end
// tests: an HTTP server on :8080 that names its task.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n", os.Getenv("MESOS_TASK_ID"))
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
