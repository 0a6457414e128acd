import CaravanCLI

await CaravanMain.main()
