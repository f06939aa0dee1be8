// Command httpd is the task the end-to-end tests run: an HTTP server on
// $PORT0 that writes its pid where the test finds it and turns unhealthy
// when the test drops a file named after its task id in the sick dir.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	pids := flag.String("pids", "", "directory for <task id>.pid files")
	sick := flag.String("sick", "", "directory where <task id> marks this task unhealthy")
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
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "%s %s\n", id, os.Getenv("MARATHON_APP_VERSION"))
	})
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT0"), nil))
}
