# The corral control plane: the JavaScript build (dist/) on Node 20, with production dependencies.

# Build: every dependency, then `npm run build` (tsc) over the sources.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY machines ./machines
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production

# Dependencies first: this layer is reused until package*.json change. No scripts: the build
# (prepare) was made above.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY bin ./bin
COPY --from=build /app/dist ./dist

# Runs as root: the Docker runtime talks to the mounted /var/run/docker.sock, owned by root.
ENTRYPOINT ["node", "bin/corral.js"]
CMD ["up"]
