package worker

import (
	"net/http"
)

// Health serves the worker's probes:
//
//	GET /livez   200 while the process can work; 503 once its NATS
//	             connection has closed for good (restart it)
//	GET /readyz  200 when connected to NATS with its streams set up and not
//	             draining; 503 otherwise
func (w *Worker) Health() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !w.Alive() {
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = rw.Write([]byte("NATS connection closed\n"))
			return
		}
		_, _ = rw.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !w.Ready() {
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = rw.Write([]byte("not ready\n"))
			return
		}
		_, _ = rw.Write([]byte("ready\n"))
	})
	return mux
}
