# One image for the three services; compose (or Kubernetes) picks each one's command:
#   node dist/auth/main.js | node dist/auth/cli.js migrate | node dist/content/main.js | node dist/gateway/main.js
# Plain Dockerfile syntax (no BuildKit mounts), so Compose v1's classic builder builds it too.
ARG NODE_IMAGE=node:20-slim
# The packageManager of package.json (test/e2e/compose-stack checks that they agree).
ARG PNPM_VERSION=10.34.8

# --- build: every package, the bundles, then a production-only node_modules for them ---------
FROM ${NODE_IMAGE} AS build
ARG PNPM_VERSION
WORKDIR /app
RUN npm install -g "pnpm@${PNPM_VERSION}"
# Only the lockfile: this layer (every locked package, downloaded) is cached until it changes.
COPY pnpm-lock.yaml pnpm-workspace.yaml .npmrc ./
RUN pnpm fetch
COPY . .
RUN pnpm install --frozen-lockfile --offline && pnpm build
# The bundles link their packages into node_modules/.pnpm (see scripts/build.ts). Replace the
# development install with a production one of the three services, from the same lockfile:
# it lays out node_modules/.pnpm the same way, without the dev tools. Then check that every
# link in dist/ still lands on a package.
RUN find . -path ./dist -prune -o -name node_modules -type d -prune -exec rm -rf {} + \
 && pnpm install --prod --frozen-lockfile --offline --ignore-scripts \
      --filter "@gatehouse/auth..." --filter "@gatehouse/content..." --filter "@gatehouse/gateway..." \
 && broken="$(find dist -xtype l)" \
 && if [ -n "$broken" ]; then echo "dist/ links packages the production install lacks:"; echo "$broken"; exit 1; fi \
 && node dist/auth/cli.js --help > /dev/null
# What the runtime stage takes: the bundles, the production packages, and the web console's
# built files when the checkout has them (the gateway serves them from ../../console/dist).
RUN mkdir -p /out \
 && cp -a dist node_modules /out/ \
 && if [ -d console/dist ]; then mkdir -p /out/console && cp -a console/dist /out/console/; fi

# --- runtime: Node, the bundles and their production packages; no sources, no pnpm ----------
FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
# HOST: listen on the container's interfaces, not only its loopback. NODE_OPTIONS: a 2 MiB
# young generation keeps each service's memory under load near its idle size (measured by
# `pnpm bench`, which runs the services with these options and the commands of
# docker-compose.yml). Add --enable-source-maps for TypeScript file and line in stack traces
# (about 10 MiB more per service). MALLOC_ARENA_MAX: at most two glibc malloc arenas instead of
# one per thread (up to 8 per core), so that auth's password threads do not each keep an arena
# of their own; auth's peak under sign-ups is 6-11 MiB lower (`pnpm bench`), at the same
# sign-in rate. glibc only: on a musl (Alpine) NODE_IMAGE it does nothing.
ENV NODE_ENV=production HOST=0.0.0.0 NODE_OPTIONS=--max-semi-space-size=2 MALLOC_ARENA_MAX=2
# Owned by root and read-only to the service: the code cannot be changed by the process that
# runs it (and Kubernetes can mount the root filesystem read-only).
COPY --from=build /out/ ./
# The image's `node` user, by number so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
# Every service sets PORT; GET /healthz answers while the process runs. Compose and Kubernetes
# use their own checks (/readyz), this one serves a plain `docker run`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The gateway, as docker-compose.yml runs it: its young generation is 4 MiB (the flag overrides
# NODE_OPTIONS; see the comment there).
CMD ["node", "--max-old-space-size=384", "--max-semi-space-size=4", "dist/gateway/main.js"]
