# One image for the three services; compose picks the entry point of each.
FROM node:20-slim
WORKDIR /app
RUN npm install -g pnpm@10.34.8
COPY pnpm-lock.yaml pnpm-workspace.yaml package.json .npmrc ./
COPY packages/common/package.json packages/common/
COPY packages/tokens/package.json packages/tokens/
COPY packages/testing/package.json packages/testing/
COPY services/auth/package.json services/auth/
COPY services/content/package.json services/content/
COPY gateway/package.json gateway/
RUN pnpm install --frozen-lockfile
COPY . .
USER node
ENV NODE_ENV=production HOST=0.0.0.0
CMD ["node", "--import", "tsx", "gateway/src/main.ts"]
