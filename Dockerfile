# The corral control plane. TypeScript runs through tsx at run time (there is no build step), so
# tsx is a production dependency and the image carries sources, not compiled output.
FROM node:20-bookworm-slim

WORKDIR /app
ENV NODE_ENV=production

# Dependencies first: this layer is reused until package*.json change.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY tsconfig.json ./
COPY bin ./bin
COPY machines ./machines
COPY src ./src

# Runs as root: the Docker runtime talks to the mounted /var/run/docker.sock, owned by root.
ENTRYPOINT ["node", "bin/corral.js"]
CMD ["up"]
