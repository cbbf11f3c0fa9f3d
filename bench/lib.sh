# Shared by the benchmark scripts (sourced, not run).

# Prints an nginx server block on 127.0.0.1:PORT whose every request is
# first checked by an auth_request subrequest to UPSTREAM's /_auth/verify
# (an nginx upstream name), as an operator's nginx in front of Portcullis
# would, then proxied to the upstream named static_up.
nginx_auth_server() { # port upstream
  cat <<CONF
  server { listen 127.0.0.1:$1;
    location = /_verify { internal; proxy_pass http://$2/_auth/verify?mode=nginx;
      proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
      proxy_http_version 1.1; proxy_set_header Connection ""; }
    location / { auth_request /_verify; proxy_pass http://static_up;
      proxy_http_version 1.1; proxy_set_header Connection ""; } }
CONF
}
