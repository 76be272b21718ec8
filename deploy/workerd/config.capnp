# longshore on workerd: `npm run build && npm run build:worker`, then from this folder
#   npx workerd serve config.capnp
# serves the app and the proxy on :8080. Edit LONGSHORE_CONFIG_JSON (same keys as a
# LONGSHORE_CONFIG file; see README "Proxy configuration"). The network service allows public
# addresses only: loopback/private upstreams are refused by the runtime as well as by the policy.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "longshore", worker = .longshoreWorker),
    (name = "internet", network = (allow = ["public"], tlsOptions = (trustBrowserCas = true))),
    (name = "assets", disk = (path = "../../dist", writable = false)),
  ],
  sockets = [ (name = "http", address = "*:8080", http = (), service = "longshore") ],
);

const longshoreWorker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "dist/worker.js") ],
  compatibilityDate = "2026-11-01",
  bindings = [
    (name = "LONGSHORE_CONFIG_JSON", text = "{\"listen\": {\"host\": \"0.0.0.0\", \"port\": 8080}, \"allowLoopback\": false}"),
    (name = "ASSETS", service = "assets"),
  ],
  globalOutbound = "internet",
);
