package sched

import "net/http"

// RouteClass is routeClass for the external tests.
var RouteClass = routeClass

// Mux returns the routes inside the master's handler.
func (m *Master) Mux() *http.ServeMux { return m.mux }
