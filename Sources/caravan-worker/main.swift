import WorkerCLI

await WorkerMain.main()
