# The sagaflow image: one image for every process (API, workers, services, migrate);
# docker-compose.yml picks the process with `command`. Two stages: the build stage
# compiles the TypeScript (`npm run build`, SQL migrations included) and prebuilds
# the workflow bundle; the runtime image holds that JavaScript and the production
# dependencies only (no TypeScript, no test server, no embedded PostgreSQL).

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The toolkit is a workspace package (packages/toolkit) the service depends on.
COPY packages/toolkit/package.json ./packages/toolkit/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY packages/toolkit/tsconfig.build.json ./packages/toolkit/
COPY packages/toolkit/src ./packages/toolkit/src
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY bin ./bin
# The simulated payment provider and carrier (the compose file's `services`).
COPY dev ./dev
RUN npm run build
# Bundle the workflow code now, so a worker starts without running webpack
# (workers/bundle.ts writes dist/workflow-bundle.js).
RUN node dist/bin/sagaflow.js build-bundle

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY packages/toolkit/package.json ./packages/toolkit/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The toolkit's compiled files, which dist/ loads as @sagaflow/toolkit.
COPY --from=build /app/packages/toolkit/dist ./packages/toolkit/dist
ENV SAGAFLOW_WORKFLOW_BUNDLE=/app/dist/workflow-bundle.js

# The node image's unprivileged user; it needs no write access to /app.
USER node

# The API's port; workers serve /metrics, /healthz and /readyz on 9464.
EXPOSE 8080 9464

CMD ["node", "dist/bin/sagaflow.js", "api"]
