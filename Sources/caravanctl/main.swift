import CaravanctlCLI

await CaravanctlMain.main()
