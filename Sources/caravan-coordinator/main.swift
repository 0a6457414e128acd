import CoordinatorCLI

await CoordinatorMain.main()
