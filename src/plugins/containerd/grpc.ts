// The few containerd gRPC calls `ctr` (1.6) cannot make: creating a task from CRIU images in a
// directory (what the Go client's WithRestoreImagePath does), reading a snapshot's mounts, and
// deleting a task for its exit status.
// Loaded on demand: only a containerd restore needs gRPC.

import type { Buffer } from "node:buffer";

const PROTO = `syntax = "proto3"; package cedana;
message Any { string type_url = 1; bytes value = 2; }
message Mount { string type = 1; string source = 2; string target = 3; repeated string options = 4; }
message CreateTaskRequest { string container_id = 1; repeated Mount rootfs = 3; string stdin = 4;
  string stdout = 5; string stderr = 6; bool terminal = 7; Any options = 9; }
message CreateTaskResponse { string container_id = 1; uint32 pid = 2; }
message StartRequest { string container_id = 1; string exec_id = 2; }
message StartResponse { uint32 pid = 1; }
message MountsRequest { string snapshotter = 1; string key = 2; }
message MountsResponse { repeated Mount mounts = 1; }
message RuncOptions { string criu_image_path = 10; string criu_work_path = 11; }
message DeleteTaskRequest { string container_id = 1; }
message DeleteResponse { string id = 1; uint32 pid = 2; uint32 exit_status = 3; }`;

export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export class ContainerdApi {
  private constructor(
    // deno-lint-ignore no-explicit-any
    private readonly client: any,
    // deno-lint-ignore no-explicit-any
    private readonly md: any,
    // deno-lint-ignore no-explicit-any
    private readonly root: any,
  ) {}

  static async connect(address: string, namespace: string): Promise<ContainerdApi> {
    const grpc = await import("@grpc/grpc-js");
    const protobuf = (await import("protobufjs")).default;
    const client = new grpc.Client(`unix://${address}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set("containerd-namespace", namespace);
    return new ContainerdApi(client, md, protobuf.parse(PROTO).root);
  }

  // deno-lint-ignore no-explicit-any
  #call(path: string, req: string, res: string, body: object): Promise<any> {
    const T = (n: string) => this.root.lookupType(`cedana.${n}`);
    return new Promise((ok, fail) =>
      this.client.makeUnaryRequest(
        path,
        (v: object) => T(req).encode(T(req).fromObject(v)).finish() as Buffer,
        (b: Buffer) => T(res).toObject(T(res).decode(b), { defaults: true }),
        body,
        this.md,
        { deadline: Date.now() + 120_000 },
        (e: Error | null, r: unknown) => (e ? fail(e) : ok(r)),
      )
    );
  }

  async mounts(key: string, snapshotter = "overlayfs"): Promise<Mount[]> {
    const r = await this.#call(
      "/containerd.services.snapshots.v1.Snapshots/Mounts",
      "MountsRequest",
      "MountsResponse",
      {
        snapshotter,
        key,
      },
    );
    return r.mounts;
  }

  /** Creates the container's task from CRIU images and starts it; returns the task's PID. */
  async restoreTask(o: { id: string; imagesDir: string; workDir: string; log: string }): Promise<number> {
    const rootfs = await this.mounts(o.id);
    const options = this.root.lookupType("cedana.RuncOptions")
      .encode({ criuImagePath: o.imagesDir, criuWorkPath: o.workDir }).finish();
    const uri = `file://${o.log}`;
    await this.#call(
      "/containerd.services.tasks.v1.Tasks/Create",
      "CreateTaskRequest",
      "CreateTaskResponse",
      {
        containerId: o.id,
        rootfs,
        stdout: uri,
        stderr: uri,
        options: { typeUrl: "containerd.runc.v1.Options", value: options },
      },
    );
    const started = await this.#call(
      "/containerd.services.tasks.v1.Tasks/Start",
      "StartRequest",
      "StartResponse",
      {
        containerId: o.id,
      },
    );
    return started.pid;
  }

  /** Deletes the container's stopped task; returns its exit status (128+N after signal N). */
  async deleteTask(id: string): Promise<number> {
    const r = await this.#call(
      "/containerd.services.tasks.v1.Tasks/Delete",
      "DeleteTaskRequest",
      "DeleteResponse",
      {
        containerId: id,
      },
    );
    return r.exitStatus;
  }

  close(): void {
    this.client.close();
  }
}
