# The sagaflow image: one image for every process (API, workers, services, migrate);
# docker-compose.yml picks the process with `command`. Processes run the TypeScript
# sources with ts-node (transpile-only), exactly as the npm scripts do: `tsc` output
# would lack the SQL migrations in src/db/migrations.
FROM node:20-bookworm-slim

WORKDIR /app

# `npm install`, not `npm ci`: the lock file lacks the macOS and Windows builds of
# @swc/core that this project's registry does not serve, and `npm ci` refuses it
# (see .ci/run). Dev dependencies are needed: ts-node and typescript run the code.
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund && npm cache clean --force

COPY tsconfig.json ./
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY bin ./bin
# The simulated payment provider and carrier (the compose file's `services`).
COPY dev ./dev
# The example sagas built on the public API (the trip booking).
COPY examples ./examples

# Bundle the workflow code now, so a worker starts without running webpack.
# `npm run build:bundle` writes dist/workflow-bundle.js (workers/bundle.ts).
RUN npm run build:bundle
ENV SAGAFLOW_WORKFLOW_BUNDLE=/app/dist/workflow-bundle.js

# The node image's unprivileged user; it needs no write access to /app.
USER node

# The API's port; workers serve /metrics on 9464.
EXPOSE 8080 9464

CMD ["node", "-r", "ts-node/register/transpile-only", "bin/api.ts"]
